"""A small IMS UE for end-to-end tests: sends REGISTERs over UDP or TCP on loopback and answers
challenges with IMS AKA or MD5 digest, including what sipp cannot do (SQN resynchronisation).
"""
from __future__ import annotations

import itertools
import secrets
import socket
from dataclasses import dataclass, field

from actors.auth import aka, digest
from transport.sip.framing import StreamFramer
from transport.sip.message import Request, Response
from transport.sip.parser import parse_message


@dataclass
class Ue:
    """One UE registering ``impi``/``impu`` against the registrar on ``port`` over ``transport``."""

    impi: str
    impu: str
    port: int
    transport: str = "udp"
    realm: str = "ims.test"
    call_id: str = field(default_factory=lambda: secrets.token_hex(8))
    _cseq: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.settimeout(10)
        self.sock.bind(("127.0.0.1", 0))
        if self.transport == "tcp":
            self.sock.connect(("127.0.0.1", self.port))
        self.local_port = self.sock.getsockname()[1]
        self._framer = StreamFramer()
        self._frames: list[bytes] = []  # framed, not yet received: one read may hold several

    def close(self) -> None:
        self.sock.close()

    def register(self, authorization: str | None = None, expires: int = 600,
                 integrity_protected: str | None = None, headers: tuple[str, ...] = ()
                 ) -> Response:
        """One REGISTER and its answer; ``authorization`` None sends the initial IMS form
        (empty response); ``headers``: more header lines ("Name: value")."""
        return self._exchange(self.register_request(authorization, expires,
                                                    integrity_protected, headers))

    def register_request(self, authorization: str | None = None, expires: int = 600,
                         integrity_protected: str | None = None, headers: tuple[str, ...] = ()
                         ) -> bytes:
        """The bytes of the next REGISTER, as ``register`` sends it."""
        if authorization is None:
            authorization = (f'Digest username="{self.impi}", realm="{self.realm}", '
                             f'uri="sip:{self.realm}", nonce="", response=""')
        if integrity_protected is not None:
            authorization += f", integrity-protected=\"{integrity_protected}\""
        proto = self.transport.upper()
        text = "\r\n".join([
            f"REGISTER sip:{self.realm} SIP/2.0",
            f"Via: SIP/2.0/{proto} 127.0.0.1:{self.local_port};branch=z9hG4bK{secrets.token_hex(6)}",
            "Max-Forwards: 70",
            f"From: <{self.impu}>;tag={secrets.token_hex(4)}",
            f"To: <{self.impu}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {next(self._cseq)} REGISTER",
            f"Contact: <sip:ue@127.0.0.1:{self.local_port};transport={self.transport}>",
            f"Expires: {expires}",
            f"Authorization: {authorization}",
            *headers,
            "Content-Length: 0", "", ""])
        return text.encode()

    def _exchange(self, data: bytes) -> Response:
        self.send(data)
        return self.receive()

    def send(self, data: bytes) -> None:
        """One message to the registrar."""
        if self.transport == "udp":
            self.sock.sendto(data, ("127.0.0.1", self.port))
        else:
            self.sock.sendall(data)

    def receive(self) -> Request | Response:
        """The next message from the registrar: a response, or a request such as a NOTIFY."""
        if self.transport == "udp":
            return parse_message(self.sock.recvfrom(65535)[0])
        while not self._frames:
            self._frames += read_messages(self.sock, self._framer)
        return parse_message(self._frames.pop(0))


def read_messages(sock: socket.socket, framer: StreamFramer) -> list[bytes]:
    """The whole SIP messages one read of a stream completes (keep-alives left out). A closed
    stream raises ConnectionResetError: reading on would return nothing, forever."""
    data = sock.recv(65535)
    if not data:
        raise ConnectionResetError("the registrar closed the connection")
    return [frame for frame in framer.feed(data) if isinstance(frame, bytes)]


def challenge(response: Response) -> dict[str, str]:
    """The parameters of a 401's WWW-Authenticate, names lower-cased."""
    value = response.headers.get("WWW-Authenticate")
    assert value and value.startswith("Digest "), value
    return digest.parse_params(value[len("Digest "):])


def aka_answer(ue: Ue, params: dict[str, str], k: bytes, opc: bytes, sqn_ms: int,
               password_override: bytes | None = None) -> tuple[str, aka.UeAnswer]:
    """The Authorization a USIM/ISIM gives for an AKAv1-MD5 challenge (RFC 3310): RES as the
    password, or an empty password and ``auts`` when the network's SQN is not fresh."""
    rand, autn, _ = aka.split_aka_nonce(params["nonce"])
    answer = aka.ue_respond(k, opc, rand, autn, sqn_ms)
    uri, cnonce, nc = f"sip:{ue.realm}", secrets.token_hex(4), "00000001"
    res = b"" if answer.synchronisation_failure else answer.res
    if password_override is not None:
        res = password_override
    ha1 = digest.aka_ha1(ue.impi, params["realm"], res)
    value = (f'Digest username="{ue.impi}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
             f'uri="{uri}", response="{digest.response(ha1, params["nonce"], "REGISTER", uri, "auth", nc, cnonce)}", '
             f'algorithm=AKAv1-MD5, qop=auth, nc={nc}, cnonce="{cnonce}"')
    if answer.synchronisation_failure:
        value += f', auts="{aka.encode_auts(answer.auts)}"'
    return value, answer

