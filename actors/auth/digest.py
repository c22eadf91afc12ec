"""MD5 HTTP Digest as SIP uses it (RFC 2617, RFC 3261 22.4), with the AKAv1-MD5 variant of
RFC 3310 where the password is RES as raw bytes.

Parsing is strict where a sloppy reading could let a wrong answer through, and any text
that is not valid credentials fails with ValueError only, so callers can answer 400.
"""
from __future__ import annotations

import hashlib
import hmac
import string
from dataclasses import dataclass, field

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")  # RFC 3261 25.1
_WHITESPACE = " \t\r\n"
_QOPS = ("auth", "auth-int")
_HEX = frozenset(string.hexdigits)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _wire_bytes(text: str) -> bytes:
    """UTF-8, with bytes the SIP parser kept as surrogate escapes restored as they came."""
    return text.encode("utf-8", "surrogateescape")


def _joined(*parts: str) -> bytes:
    return _wire_bytes(":".join(parts))


def ha1(username: str, realm: str, password: str) -> str:
    """H(A1) = MD5(username:realm:password), what a server may store instead of the password."""
    return _md5(_joined(username, realm, password))


def aka_ha1(username: str, realm: str, res: bytes) -> str:
    """H(A1) for AKAv1-MD5: RES is the password as raw bytes (RFC 3310 3.3), not its hex."""
    return _md5(_joined(username, realm, "") + bytes(res))


def _ha2(method: str, uri: str, qop: str | None, body: bytes) -> str:
    if qop is not None and qop.lower() == "auth-int":
        return _md5(_joined(method, uri, _md5(bytes(body))))
    return _md5(_joined(method, uri))


def response(ha1_hex: str, nonce: str, method: str, uri: str, qop: str | None = None,
             nc: str | None = None, cnonce: str | None = None, body: bytes = b"") -> str:
    """The request-digest of RFC 2617 3.2.2.1: the RFC 2069 form without qop, else with
    nc and cnonce; ``body`` counts only for auth-int."""
    ha2 = _ha2(method, uri, qop, body)
    if qop is None:
        return _md5(_joined(ha1_hex, nonce, ha2))
    if qop.lower() not in _QOPS:
        raise ValueError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise ValueError("qop needs nc and cnonce")
    return _md5(_joined(ha1_hex, nonce, nc, cnonce, qop, ha2))


def constant_time_equal(a: str, b: str) -> bool:
    """Compare digests without leaking through timing how much of a guess was right."""
    return hmac.compare_digest(_wire_bytes(a), _wire_bytes(b))


@dataclass(frozen=True)
class DigestCredentials:
    """A parsed Authorization (or Proxy-Authorization) value; ``params`` has every
    parameter, names lowercased, quoted values unescaped."""

    scheme: str
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None
    cnonce: str | None
    nc: str | None
    qop: str | None
    opaque: str | None
    auts: str | None
    params: dict[str, str] = field(hash=False)

    @property
    def is_initial(self) -> bool:
        """The first IMS REGISTER (TS 24.229 5.1.1.2.1) names the user but answers nothing:
        empty response and no auts."""
        return not self.response and self.auts is None

    @property
    def is_resync(self) -> bool:
        """The UE rejected our SQN and sent AUTS (RFC 3310 3.4)."""
        return self.auts is not None


def parse_authorization(value: str) -> DigestCredentials:
    """Digest credentials from a header value; ValueError with a short reason otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"credentials must be str, got {type(value).__name__}")
    position = _skip_whitespace(value, 0)
    scheme, position = _token(value, position)
    if not scheme:
        raise ValueError("no authentication scheme")
    if scheme.lower() != "digest":
        raise ValueError(f"not Digest credentials: {scheme[:20]!r}")
    if position < len(value) and value[position] not in _WHITESPACE:
        raise ValueError("scheme not followed by whitespace")
    return _credentials(scheme, _parse_params(value, position))


def parse_params(text: str) -> dict[str, str]:
    """The parameters of a challenge or credentials after the scheme (names lowercased, quoted
    values unescaped); ValueError when the list is malformed."""
    return _parse_params(text, 0)


def _parse_params(text: str, position: int) -> dict[str, str]:
    params: dict[str, str] = {}
    while True:
        position = _skip_whitespace(text, position)
        if position == len(text):
            return params
        if text[position] == ",":  # empty list elements are allowed (RFC 7230 7)
            position += 1
            continue
        name, value, position = _param(text, position)
        if name in params:
            raise ValueError(f"duplicate parameter {name}")
        params[name] = value
        position = _skip_whitespace(text, position)
        if position < len(text) and text[position] != ",":
            raise ValueError(f"expected a comma after {name}")


def _param(text: str, position: int) -> tuple[str, str, int]:
    name, position = _token(text, position)
    if not name:
        raise ValueError(f"expected a parameter name at offset {position}")
    position = _skip_whitespace(text, position)
    if position == len(text) or text[position] != "=":
        raise ValueError(f"parameter {name} has no value")
    position = _skip_whitespace(text, position + 1)
    if position < len(text) and text[position] == '"':
        value, position = _quoted_string(text, position)
    else:
        value, position = _token(text, position)
        if not value:
            raise ValueError(f"parameter {name} needs a token or a quoted string")
    return name.lower(), value, position


def _skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position] in _WHITESPACE:
        position += 1
    return position


def _token(text: str, position: int) -> tuple[str, int]:
    end = position
    while end < len(text) and text[end] in _TOKEN_CHARS:
        end += 1
    return text[position:end], end


def _quoted_string(text: str, position: int) -> tuple[str, int]:
    """Unescape a quoted-string starting at its opening quote; return the offset after it."""
    characters: list[str] = []
    position += 1
    while position < len(text):
        character = text[position]
        if character == '"':
            return "".join(characters), position + 1
        if character == "\\":
            position += 1
            if position == len(text):
                break
            character = text[position]
        characters.append(character)
        position += 1
    raise ValueError("unterminated quoted string")


def _credentials(scheme: str, params: dict[str, str]) -> DigestCredentials:
    required = ["username", "realm", "nonce", "uri"]
    if "auts" not in params:  # a resynchronisation may leave the response out
        required.append("response")
    missing = [name for name in required if name not in params]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if "qop" in params and ("nc" not in params or "cnonce" not in params):
        raise ValueError("qop without nc and cnonce")
    nc = params.get("nc")
    if nc is not None and (len(nc) != 8 or not _HEX.issuperset(nc)):
        raise ValueError("nc must be 8 hex digits")
    return DigestCredentials(
        scheme=scheme, username=params["username"], realm=params["realm"],
        nonce=params["nonce"], uri=params["uri"], response=params.get("response", ""),
        algorithm=params.get("algorithm"), cnonce=params.get("cnonce"), nc=nc,
        qop=params.get("qop"), opaque=params.get("opaque"), auts=params.get("auts"),
        params=params)


def _quote(name: str, value: str) -> str:
    """A quoted-string; control characters are refused so no value can split the header."""
    if any((ord(character) < 0x20 and character != "\t") or ord(character) == 0x7F
           for character in value):
        raise ValueError(f"{name} contains a control character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def www_authenticate(realm: str, nonce: str, algorithm: str, qop: str | None = "auth",
                     stale: bool = False, ck: bytes | None = None, ik: bytes | None = None,
                     opaque: str | None = None) -> str:
    """A WWW-Authenticate value. CK and IK, quoted lowercase hex, are for the P-CSCF, which
    removes them before the UE sees the challenge (TS 24.229 5.4.1.2.1)."""
    if not algorithm or not _TOKEN_CHARS.issuperset(algorithm):
        raise ValueError(f"algorithm must be a token, got {algorithm!r}")
    parts = [f"realm={_quote('realm', realm)}", f"nonce={_quote('nonce', nonce)}"]
    if opaque is not None:
        parts.append(f"opaque={_quote('opaque', opaque)}")
    parts.append(f"algorithm={algorithm}")
    if qop is not None:
        parts.append(f"qop={_quote('qop', qop)}")
    if stale:
        parts.append("stale=TRUE")
    if ck is not None:
        parts.append(f'ck="{bytes(ck).hex()}"')
    if ik is not None:
        parts.append(f'ik="{bytes(ik).hex()}"')
    return "Digest " + ", ".join(parts)
