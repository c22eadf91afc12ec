"""Authentication at registration: Milenage (TS 35.206), IMS AKA vectors, UE answers and
SQN resynchronisation (TS 33.102), and the SIP Digest / Digest-AKAv1-MD5 header codecs
(RFC 2617, RFC 3261, RFC 3310). Everything here is pure: no Ray, no sockets, no clocks,
so the registrar and test clients share it and it is tested against published vectors."""
