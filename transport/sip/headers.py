"""Grammar of the header values a registrar reads (RFC 3261 section 20 and 25.1).

Each parser takes one header value (one element of a comma list) and raises SipParseError(400)
with a reason naming what is wrong.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError
from .grammar import QUOTED, TOKEN, TOKEN_CHARS, quote, unquote
from .uri import PORT, SIP_REST, SipUri, parse_uri, sip_rest, sip_uri

# SEMI generic-param, or else any single character: one findall both checks and extracts the
# parameters. A gen-value is a token, a host or a quoted-string (':' and brackets admit IPv6,
# as in Via received).
_scan_params = re.compile(
    f"[ \\t]*+;[ \\t]*+({TOKEN})(?:[ \\t]*+=[ \\t]*+([{TOKEN_CHARS}:\\[\\]]++|{QUOTED}))?[ \\t]*+"
    "|(.)", re.S).findall
_name_addr_head = re.compile(
    f"[ \\t]*+(?:({QUOTED})|({TOKEN}(?>(?:[ \\t]++{TOKEN})*)))?[ \\t]*+<([^<>]*+)>[ \\t]*+").match
_addr_spec_head = re.compile(r'[ \t]*+([^ \t;,<>"]++)[ \t]*+(?=;|$)').match
_via_head = re.compile(
    f"[ \\t]*+({TOKEN})[ \\t]*+/[ \\t]*+({TOKEN})[ \\t]*+/[ \\t]*+({TOKEN})[ \\t]++"
    r"(\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9\-._]++)(?:[ \t]*+:[ \t]*+([0-9]{1,5}))?[ \t]*+").match
_CSEQ = re.compile(f"[ \\t]*+([0-9]++)[ \\t]++({TOKEN})[ \\t]*+").fullmatch
_LIST_SPECIAL = re.compile('[",<]')
_QUOTED_TAIL = re.compile(r'[^"\\]*+(?>(?:\\.[^"\\]*+)*)"', re.S)  # a quoted-string after its '"'
_Q_VALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?").fullmatch
MAX_UINT32 = 2**32 - 1

# Fast paths. Most values have a plain shape: no whitespace (but the one SP of a Via),
# quoted-strings without ';' or backslash, a lower-case "sip:" or "sips:" URI. On such a
# value the general grammar above reads the same, and parameters can simply be split at ';'.
# The plain patterns accept only values of that shape; anything else takes the general path,
# so a value means the same, and raises the same error, whichever path reads it.
_PLAIN_QDTEXT = "[\\x00-\\x09\\x0b\\x0c\\x0e-!#-:<-\\[\\]-\\U0010FFFF]"  # no ';', no backslash
PLAIN_PARAMS = f'(?>(?:;{TOKEN}(?:=(?:[{TOKEN_CHARS}:\\[\\]]++|"{_PLAIN_QDTEXT}*+"))?)*)'
_HOST = r"\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9\-._]++"
_plain_params = re.compile(PLAIN_PARAMS).fullmatch
# Groups: display name (its quotes off), URI, scheme, the six groups of SIP_REST, params.
_plain_name_addr = re.compile(
    f'(?:"({_PLAIN_QDTEXT}*+)" ?)?<((sips?):{SIP_REST})>({PLAIN_PARAMS})').fullmatch
_plain_via = re.compile(
    f"({TOKEN}/{TOKEN})/({TOKEN}) ({_HOST})(?::([0-9]{{1,5}}))?({PLAIN_PARAMS})").fullmatch
# Checks only, for a value a parser does not need yet: the plain shape with a valid port, so
# that the value is known to parse when it is read.
is_plain_name_addr = re.compile(
    f'(?:"{_PLAIN_QDTEXT}*+" ?)?<sips?:{sip_rest(PORT)}>{PLAIN_PARAMS}').fullmatch
is_plain_via = re.compile(
    f"{TOKEN}/{TOKEN}/{TOKEN} (?:{_HOST})(?::{PORT})?{PLAIN_PARAMS}").fullmatch


def _split_params(text: str) -> dict[str, str | None]:
    """Parameters that match PLAIN_PARAMS."""
    params: dict[str, str | None] = {}
    if text:
        for item in text[1:].split(";"):
            name, equals, value = item.partition("=")
            params[name.lower()] = value if equals else None
    return params


def parse_params(text: str, pos: int = 0) -> dict[str, str | None]:
    """`*( SEMI generic-param )` from `pos` to the end: names lower-cased, quoted values kept
    with their quotes."""
    if _plain_params(text, pos):
        return _split_params(text[pos:])
    return _scan(text, pos)


def _scan(text: str, pos: int = 0) -> dict[str, str | None]:
    """parse_params by the general grammar."""
    params: dict[str, str | None] = {}
    for name, value, stray in _scan_params(text, pos):
        if stray:
            raise SipParseError(400, "Bad header parameter")
        params[name.lower()] = value or None
    return params


def _params_text(params: dict[str, str | None]) -> str:
    return "".join([f";{name}" if value is None else f";{name}={value}"
                    for name, value in params.items()])


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route style value: display name, URI and header parameters."""

    display_name: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)
    raw_uri: str = ""  # the URI as written in the message

    def __str__(self) -> str:
        text = f"<{self.uri}>" if self.display_name is None else (
            f"{quote(self.display_name)} <{self.uri}>")
        return text + _params_text(self.params) if self.params else text

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        """The Contact `expires` parameter (RFC 3261 10.2.1.1), None when absent."""
        value = self.params.get("expires")
        return None if value is None else parse_int_header(value, "expires parameter")

    @property
    def q(self) -> float | None:
        value = self.params.get("q")
        if value is None:
            return None
        if _Q_VALUE(value) is None:
            raise SipParseError(400, "Bad q parameter")
        return float(value)


def parse_name_addr(value: str) -> NameAddr:
    """name-addr (`["display"] <uri>;params`) or addr-spec (`uri;params`) followed by header
    parameters; an addr-spec ends at the first ';' (RFC 3261 20.10)."""
    match = _plain_name_addr(value)
    if match is None:
        return _name_addr(value)
    display, raw_uri, scheme, user, password, host, port, uri_params, headers, params = (
        match.groups())
    uri = sip_uri(scheme, "%" in raw_uri, user, password, host, port, uri_params, headers)
    return NameAddr(display, uri, _split_params(params) if params else {}, raw_uri)


def _name_addr(value: str) -> NameAddr:
    """parse_name_addr by the general grammar."""
    match = _name_addr_head(value)
    if match is not None:
        quoted, tokens, raw_uri = match.groups()
        display = unquote(quoted) if quoted is not None else tokens
    else:
        match = _addr_spec_head(value)
        if match is None:
            raise SipParseError(400, "Bad display name" if "<" in value else "Bad name-addr")
        raw_uri = match.group(1)
        if "?" in raw_uri:  # RFC 3261 20: a URI with headers must be enclosed in <>
            raise SipParseError(400, "URI with headers outside <>")
        display = None
    return NameAddr(display, parse_uri(raw_uri), _scan(value, match.end()), raw_uri)


class _Star:
    """`Contact: *` (RFC 3261 10.2.2): remove every binding."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STAR"


STAR = _Star()


def parse_contacts(values: list[str]) -> list[NameAddr] | _Star:
    if "*" in values:
        if len(values) > 1:
            raise SipParseError(400, "Contact * mixed with other contacts")
        return STAR
    return [parse_name_addr(value) for value in values]


@dataclass(slots=True)
class Via:
    protocol: str  # "SIP/2.0"
    transport: str  # upper case
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        host = self.host.lower()
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hostport}{_params_text(self.params)}"


def parse_via(value: str) -> Via:
    match = _plain_via(value)
    if match is None:
        return _via(value)
    protocol, transport, host, port, params = match.groups()
    if port is not None:
        port = int(port)
        if port > 65535:
            raise SipParseError(400, "Bad Via")
    return Via(protocol, transport.upper(), host, port, _split_params(params))


def _via(value: str) -> Via:
    """parse_via by the general grammar."""
    match = _via_head(value)
    if match is None:
        raise SipParseError(400, "Bad Via")
    name, version, transport, host, port = match.groups()
    if port is not None:
        port = int(port)
        if port > 65535:
            raise SipParseError(400, "Bad Via")
    try:
        params = _scan(value, match.end())
    except SipParseError:
        raise SipParseError(400, "Bad Via") from None
    return Via(f"{name}/{version}", transport.upper(), host, port, params)


# Methods (tokens all): "1 REGISTER" is a CSeq without the pattern.
METHODS = frozenset(("REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "OPTIONS", "INVITE", "ACK",
                     "BYE", "CANCEL", "MESSAGE", "INFO", "UPDATE", "PRACK", "REFER"))


def parse_cseq(value: str) -> tuple[int, str]:
    number, _, method = value.partition(" ")
    if method in METHODS and number.isdigit() and number.isascii() and len(number) <= 10:
        sequence = int(number)
        if sequence <= MAX_UINT32:
            return sequence, method
    return _cseq(value)


def _cseq(value: str) -> tuple[int, str]:
    """parse_cseq by the general grammar."""
    match = _CSEQ(value)
    if match is None or len(match.group(1)) > 10 or int(match.group(1)) > MAX_UINT32:
        raise SipParseError(400, "Bad CSeq")
    return int(match.group(1)), match.group(2)


def parse_int_header(value: str, name: str = "integer", limit: int = MAX_UINT32) -> int:
    """A delta-seconds style value (Expires, Max-Forwards, Content-Length): decimal digits,
    at most `limit`; `name` goes into the error's reason ("Bad Expires")."""
    if value.isdigit() and value.isascii() and len(value) <= 10:  # no whitespace to strip
        number = int(value)
        if number <= limit:
            return number
        raise SipParseError(400, f"Bad {name}")
    value = value.strip(" \t")
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > limit:
        raise SipParseError(400, f"Bad {name}")
    return int(value)


def split_header_values(value: str) -> list[str]:
    """Elements of a comma-separated header value, split only at top-level commas (not inside
    a quoted-string or <...>). An empty value has no elements; empty elements are kept so that
    a parser of the element rejects them."""
    if "," not in value:
        value = value.strip(" \t")
        return [value] if value else []
    if '"' not in value and "<" not in value:
        return [part.strip(" \t") for part in value.split(",")]
    parts = []
    start = pos = 0
    while True:
        match = _LIST_SPECIAL.search(value, pos)
        if match is None:
            break
        char, at = match.group(), match.start()
        if char == ",":
            parts.append(value[start:at].strip(" \t"))
            start = pos = at + 1
        elif char == '"':
            tail = _QUOTED_TAIL.match(value, at + 1)
            if tail is None:
                raise SipParseError(400, "Unterminated quoted string")
            pos = tail.end()
        else:
            close = value.find(">", at + 1)
            if close < 0:
                raise SipParseError(400, "Unterminated <")
            pos = close + 1
    parts.append(value[start:].strip(" \t"))
    return parts
