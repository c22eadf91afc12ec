"""Authentication at registration: Milenage (TS 35.206), IMS AKA vectors, UE answers and
SQN resynchronisation (TS 33.102), the SIP Digest / Digest-AKAv1-MD5 header codecs
(RFC 2617, RFC 3261, RFC 3310), the vectors an identity holds while challenged
(challenges.py) and ims_auth's REGISTER procedures (procedures.py, TS 24.229 5.4.1.2).
Everything here is pure: no Ray, no sockets, no clocks (time is passed in, the MAR injected),
so the registrar and test clients share it and it is tested against published vectors."""
