"""SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966): parsing, serialization, comparison.

Components are kept in a normalized escaped form: an escape of an unreserved character is
decoded, every other escape stays with upper-case hex (RFC 3261 19.1.4 treats an escaped
reserved character as different from the plain one). So `str(uri)` is equivalent to the
text it came from, and equal components compare equal as strings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError
from .grammar import HEX2, UNRESERVED

_MARKS = r"\-_.!~*'()"
# A port of 0 to 65535, leading zeros allowed (five digits at most, as in SIP_REST).
PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9][0-9]|6[0-4][0-9]{3}|[0-5][0-9]{4}|[0-9]{1,4})"
_USER = f"(?>(?:[A-Za-z0-9{_MARKS}&=+$,;?/]++|{HEX2})+)"
_PASSWORD = f"(?>(?:[A-Za-z0-9{_MARKS}&=+$,]++|{HEX2})*)"
_PARAM = f"(?>(?:[A-Za-z0-9{_MARKS}\\[\\]/:&+$]++|{HEX2})+)"
_HNAME = f"(?:[A-Za-z0-9{_MARKS}\\[\\]/?:+$]++|{HEX2})"
_PARAMS = f"((?>(?:;{_PARAM}(?:={_PARAM})?)*))"


def sip_rest(port: str = "([0-9]{1,5})", headers: bool = True) -> str:
    """The pattern of what follows "sip:" or "sips:", in six groups: user, password, host,
    port, params, headers (five without headers). The userinfo is optional: when no '@'
    follows, the pattern falls back to reading a host."""
    return (f"(?:({_USER})(?::({_PASSWORD}))?@)?"
            rf"(\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9\-._]++)(?::{port})?"
            + _PARAMS
            + (f"(?:\\?((?>{_HNAME}+)=(?>{_HNAME}*)(?>(?:&(?>{_HNAME}+)=(?>{_HNAME}*))*)))?" if headers else ""))


SIP_REST = sip_rest()
_SIP = re.compile(SIP_REST).fullmatch
# A sip or sips Request-URI known to parse, with a valid port and no headers (RFC 3261 19.1.1).
is_plain_request_uri = re.compile(f"sips?:{sip_rest(PORT, headers=False)}").fullmatch
_TEL = re.compile(r"(\+?[0-9A-Fa-f*#.()\-]+)" + _PARAMS).fullmatch
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*").fullmatch
_OPAQUE = re.compile(r'[^\x00-\x20\x7f<>"]+').fullmatch
_TEL_SEPARATORS = str.maketrans("", "", "-.()")
_USER_ALLOWED = frozenset(UNRESERVED | set("&=+$,;?/"))
# RFC 3261 19.1.4: these URI parameters must be present in both URIs to compare equal.
_MUST_MATCH = frozenset(("user", "ttl", "method", "maddr", "transport"))


@dataclass(slots=True)
class SipUri:
    scheme: str  # lower case: 'sip', 'sips', 'tel', or another scheme with `opaque` set
    user: str | None = None  # tel: the number
    password: str | None = None
    host: str = ""  # as written; an IPv6 reference keeps its brackets
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    opaque: str | None = None  # everything after "scheme:" for schemes other than sip/sips/tel

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            text = f"tel:{self.user}"
        else:
            hostport = self.host if self.port is None else f"{self.host}:{self.port}"
            if self.user is None:
                text = f"{self.scheme}:{hostport}"
            elif self.password is None:
                text = f"{self.scheme}:{self.user}@{hostport}"
            else:
                text = f"{self.scheme}:{self.user}:{self.password}@{hostport}"
        if self.params:
            text += "".join([f";{name}" if value is None else f";{name}={value}"
                             for name, value in self.params.items()])
        if self.headers:
            text += "?" + "&".join(f"{name}={value}" for name, value in self.headers.items())
        return text

    def aor(self) -> str:
        """The address-of-record key (RFC 3261 10.3 step 5): no port, no parameters, no headers,
        host in lower case, the user with its escapes resolved and written back canonically.
        The port goes as in Kamailio's extract_aor: ``sip:alice@ims.test:5060`` is the identity
        ``sip:alice@ims.test``, not a second one."""
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}"
        host = self.host.lower()
        if self.user is None:
            return f"{self.scheme}:{host}"
        user = self.user if "%" not in self.user else _escape(unescape(self.user), _USER_ALLOWED)
        return f"{self.scheme}:{user}@{host}"


def parse_uri(text: str) -> SipUri:
    if text.startswith("sip:"):  # by far the most common spelling
        scheme, rest = "sip", text[4:]
    else:
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or not rest:
            raise SipParseError(400, "Bad URI")
    if scheme == "sip" or scheme == "sips":
        match = _SIP(rest)
        if match is None:
            raise SipParseError(400, "Bad URI")
        return sip_uri(scheme, "%" in rest, *match.groups())
    if scheme == "tel":
        match = _TEL(rest)
        if match is None:
            raise SipParseError(400, "Bad tel URI")
        number, params = match.groups()
        return SipUri("tel", number, params=_params(params) if params else {})
    if _SCHEME(scheme) is None or _OPAQUE(rest) is None:
        raise SipParseError(400, "Bad URI")
    return SipUri(scheme, opaque=rest)


def sip_uri(scheme: str, escaped: bool, user: str | None, password: str | None, host: str,
            port: str | None, params: str, headers: str | None) -> SipUri:
    """A SipUri from the six groups of SIP_REST; `escaped` when the text holds a '%'."""
    if escaped:
        user = user and _normalize(user)
        password = password and _normalize(password)
    if port is not None:
        port = int(port)
        if port > 65535:
            raise SipParseError(400, "Bad URI port")
    return SipUri(scheme, user, password, host, port,
                  _params(params, escaped) if params else {}, _headers(headers) if headers else {})


def _params(text: str, escaped: bool = True) -> dict[str, str | None]:
    """`;name[=value]...` as matched by `_PARAMS`; names lower-cased. `escaped` False tells
    that the text holds no '%'."""
    params: dict[str, str | None] = {}
    if escaped and "%" in text:
        for item in text[1:].split(";"):
            name, equals, value = item.partition("=")
            params[_normalize(name.lower())] = _normalize(value) if equals else None
        return params
    for item in text[1:].split(";"):
        name, equals, value = item.partition("=")
        params[name.lower()] = value if equals else None
    return params


def _headers(text: str) -> dict[str, str]:
    headers = {}
    for item in text.split("&"):
        name, _, value = item.partition("=")
        headers[_normalize(name)] = _normalize(value)
    return headers


def _normalize(text: str) -> str:
    """Decode escapes of unreserved characters, upper-case the others (input already validated)."""
    if "%" not in text:
        return text
    head, *pieces = text.split("%")
    out = [head]
    for piece in pieces:
        char = chr(int(piece[:2], 16))
        out.append(char if char in UNRESERVED else "%" + piece[:2].upper())
        out.append(piece[2:])
    return "".join(out)


def unescape(text: str) -> str:
    """Every %HH escape decoded (bytes read as UTF-8; undecodable bytes kept as surrogates)."""
    if "%" not in text:
        return text
    head, *pieces = text.split("%")
    data = bytearray(head.encode("utf-8", "surrogateescape"))
    for piece in pieces:
        hex2 = piece[:2]
        if len(hex2) != 2 or not all(c in "0123456789abcdefABCDEF" for c in hex2):
            raise SipParseError(400, "Bad escape")
        data.append(int(hex2, 16))
        data += piece[2:].encode("utf-8", "surrogateescape")
    return data.decode("utf-8", "surrogateescape")


def _escape(text: str, allowed: frozenset[str]) -> str:
    return "".join(
        char if char in allowed
        else "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogateescape"))
        for char in text
    )


def uri_equal(a: SipUri | str, b: SipUri | str) -> bool:
    """URI equivalence of RFC 3261 19.1.4 (and RFC 3966 section 4 for tel)."""
    if isinstance(a, str):
        a = parse_uri(a)
    if isinstance(b, str):
        b = parse_uri(b)
    if a.scheme != b.scheme:
        return False
    if a.opaque is not None or b.opaque is not None:
        return a.opaque == b.opaque
    if a.scheme == "tel":
        return (_tel_digits(a.user) == _tel_digits(b.user)
                and _folded(a.params) == _folded(b.params))
    if (a.user != b.user or a.password != b.password or a.port != b.port
            or a.host.lower() != b.host.lower()):
        return False
    for name in a.params.keys() | b.params.keys():
        if name in a.params and name in b.params:
            if _fold(a.params[name]) != _fold(b.params[name]):
                return False
        elif name in _MUST_MATCH:
            return False
    return _folded_names(a.headers) == _folded_names(b.headers)


def _tel_digits(number: str) -> str:
    return number.translate(_TEL_SEPARATORS).lower()


def _fold(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _folded(params: dict[str, str | None]) -> dict[str, str | None]:
    return {name: _fold(value) for name, value in params.items()}


def _folded_names(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
