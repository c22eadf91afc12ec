"""Sample SIP messages for parser tests and benchmarks."""
from __future__ import annotations

DOMAIN = "ims.mnc001.mcc001.3gppnetwork.org"

# A ~1 KB IMS REGISTER as a P-CSCF forwards it: two Vias, two Contacts with instance, reg-id
# and feature tags, Path, an AKA Authorization with quoted commas and semicolons.
IMS_REGISTER = (
    f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-pcscf-4f2a9c1e;rport\r\n"
    "Via: SIP/2.0/UDP 192.0.2.55:5060;received=192.0.2.55;rport=5060;branch=z9hG4bK-ue-77d1b3\r\n"
    "Max-Forwards: 69\r\n"
    f"From: <sip:001010000000001@{DOMAIN}>;tag=4f8c1a2b\r\n"
    f"To: <sip:001010000000001@{DOMAIN}>\r\n"
    "Call-ID: 3c2a5e0f-91d4-4e7b-a1c3-5d8e2f4b6a90@192.0.2.55\r\n"
    "CSeq: 2 REGISTER\r\n"
    "Contact: <sip:001010000000001@192.0.2.55:5060;transport=udp>"
    ';+sip.instance="<urn:gsma:imei:35693803-564879-0>";reg-id=1;q=0.8;expires=600000'
    ';+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel";audio\r\n'
    "Contact: <sip:001010000000001@[2001:db8::55]:5060;transport=tcp>"
    ';+sip.instance="<urn:gsma:imei:35693803-564879-0>";reg-id=2;q=0.5;expires=600000\r\n'
    f"Path: <sip:term@pcscf.{DOMAIN}:5060;lr>\r\n"
    "Supported: path, gruu, outbound\r\n"
    f'Authorization: Digest username="001010000000001@{DOMAIN}",realm="{DOMAIN}",'
    'nonce="4t9mZ2bM3xQ;,=",uri="sip:ims.mnc001.mcc001.3gppnetwork.org",'
    'response="6629fae49393a05397450978507c4ef1",algorithm=AKAv1-MD5,qop=auth,'
    'nc=00000001,cnonce="0a4f1;,3b"\r\n'
    'P-Visited-Network-ID: "Visited network number 1"\r\n'
    "P-Access-Network-Info: 3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=0010100010019B01\r\n"
    "Expires: 600000\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
).encode()
