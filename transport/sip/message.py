"""SIP requests and responses: ordered headers, lazily parsed header values, serialization."""
from __future__ import annotations

import re
from email.utils import formatdate
from functools import lru_cache
from typing import Iterable, Iterator

from .errors import MALFORMED_INPUT_ERRORS, SipParseError
from .grammar import is_token
from .headers import (
    NameAddr,
    Via,
    parse_contacts,
    parse_cseq,
    parse_int_header,
    parse_name_addr,
    parse_via,
    split_header_values,
)
from .names import KNOWN, LIST_HEADERS, header_key, spelling
from .uri import SipUri, parse_uri

_WORD = r"""[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]+"""
CALL_ID = re.compile(f"{_WORD}(?:@{_WORD})?").fullmatch


class lazy:
    """An attribute computed from the headers on first read, then stored on the instance.

    Whatever goes wrong while parsing surfaces as SipParseError(400), never as another error.
    """

    def __init__(self, parse) -> None:
        self.parse = parse
        self.name = parse.__name__
        self.__doc__ = parse.__doc__

    def __get__(self, message, owner=None):
        if message is None:
            return self
        try:
            value = self.parse(message)
        except SipParseError:
            raise
        except MALFORMED_INPUT_ERRORS as exc:
            raise SipParseError(400, f"Bad {self.name}") from exc
        message.__dict__[self.name] = value
        return value


def read_header_lines(raw: list[str]) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """The (canonical name, value) lines of raw header lines, folded, and their index."""
    lines: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    for line in raw:
        name, colon, value = line.partition(":")
        known = KNOWN.get(name)
        if known is None:
            if line[:1] in (" ", "\t"):  # LWS continuation: the line break counts as one SP
                _fold(line, lines, index)
                continue
            known = other_name(name, colon)
        value = value.strip(" \t")
        lines.append((known[0], value))
        values = index.get(known[1])
        if values is None:
            index[known[1]] = [value]
        else:
            values.append(value)
    return lines, index


def other_name(name: str, colon: str) -> tuple[str, str]:
    """(canonical name, key) of the text before the colon of a header line (not a
    continuation) when it is not a spelling KNOWN as is."""
    if not colon:
        raise SipParseError(400, "Bad header line")
    name = name.rstrip(" \t")  # HCOLON allows whitespace before the colon
    known = KNOWN.get(name) or KNOWN.get(name.lower())
    if known is None:
        if is_token(name) is None:
            raise SipParseError(400, "Bad header name")
        known = (name, name.lower())
    return known


def _fold(continuation: str, lines: list[tuple[str, str]], index: dict[str, list[str]]) -> None:
    """Appends a continuation line to the value of the header line before it."""
    if not lines:
        raise SipParseError(400, "Continuation of the start line")
    name, value = lines[-1]
    more = continuation.strip(" \t")
    value = f"{value} {more}" if value and more else value or more
    lines[-1] = (name, value)
    index[header_key(name)][-1] = value


class Headers:
    """Header lines in message order. Names are stored in their canonical long form; look-ups
    are case-insensitive and accept compact forms."""

    # The lines of a parsed message are read from its raw lines when first needed (looking
    # values up needs only the index): `_lines` is None until then.
    __slots__ = ("_lines", "_index", "_raw")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._lines: list[tuple[str, str]] | None = []
        self._index: dict[str, list[str]] = {}  # key -> values of its lines, in order
        self._raw: list[str] | None = None
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _parsed(cls, lines: list[tuple[str, str]] | None, index: dict[str, list[str]],
                raw: list[str] | None = None) -> Headers:
        """Adopts lines and their index as built by the parser (names canonical, keys the
        lower-case long forms); without lines, the raw header lines to read them from."""
        headers = cls.__new__(cls)
        headers._lines = lines
        headers._index = index
        headers._raw = raw
        return headers

    def _all(self) -> list[tuple[str, str]]:
        lines = self._lines
        if lines is None:
            lines = self._lines = read_header_lines(self._raw)[0]
            self._raw = None
        return lines

    def get(self, name: str) -> str | None:
        """The value of the first line of this header, or None."""
        known = KNOWN.get(name)
        values = self._index.get(known[1] if known else header_key(name))
        return values[0] if values else None

    def lines(self, name: str) -> list[str]:
        """The value of every line of this header, unsplit."""
        known = KNOWN.get(name)
        return list(self._index.get(known[1] if known else header_key(name), ()))

    def get_all(self, name: str) -> list[str]:
        """Every element of this header: list headers (Via, Contact, Path...) split at top-level
        commas across all their lines; other headers one element per line."""
        known = KNOWN.get(name)
        key = known[1] if known else header_key(name)
        values = self._index.get(key)
        if not values:
            return []
        if key in LIST_HEADERS:
            if len(values) == 1:
                return split_header_values(values[0])
            return [element for value in values for element in split_header_values(value)]
        return list(values)

    def add(self, name: str, value: str) -> None:
        canonical, key = KNOWN.get(name) or spelling(name)
        (self._all() if self._lines is None else self._lines).append((canonical, value))
        values = self._index.get(key)
        if values is None:
            self._index[key] = [value]
        else:
            values.append(value)

    def set(self, name: str, value: str) -> None:
        """Replaces every line of this header by one line, where the first one was."""
        canonical, key = spelling(name)
        if key not in self._index:
            self.add(name, value)
            return
        lines, first = [], True
        for line in self._all():
            if header_key(line[0]) != key:
                lines.append(line)
            elif first:
                lines.append((canonical, value))
                first = False
        self._lines = lines
        self._index[key] = [value]

    def remove(self, name: str) -> None:
        key = header_key(name)
        if self._index.pop(key, None) is not None:
            self._lines = [line for line in self._all() if header_key(line[0]) != key]

    def __contains__(self, name: str) -> bool:
        return header_key(name) in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._all() == other._all()

    def __repr__(self) -> str:
        return f"Headers({self._all()!r})"


HeaderItems = Headers | Iterable[tuple[str, str]] | None


class _Message:
    """What requests and responses share: headers, body, the parsed common headers."""

    wire = b""  # the bytes it was parsed from (parse_message); b"" for one built here

    def __init__(self, headers: HeaderItems, body: bytes) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(400, f"Missing {name}")
        return value

    @lazy
    def vias(self) -> list[Via]:
        vias = [parse_via(value) for value in self.headers.get_all("Via")]
        if not vias:
            raise SipParseError(400, "Missing Via")
        return vias

    @lazy
    def call_id(self) -> str:
        value = self._required("Call-ID")
        if CALL_ID(value) is None:
            raise SipParseError(400, "Bad Call-ID")
        return value

    @lazy
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self._required("CSeq"))

    @lazy
    def from_(self) -> NameAddr:
        return parse_name_addr(self._required("From"))

    @lazy
    def to(self) -> NameAddr:
        return parse_name_addr(self._required("To"))

    @lazy
    def contacts(self) -> list[NameAddr] | object:
        """The Contact values, or STAR for `Contact: *`."""
        return parse_contacts(self.headers.get_all("Contact"))

    @lazy
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        return None if value is None else parse_int_header(value, "Expires")

    @lazy
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_int_header(value, "Max-Forwards", 255)

    @lazy
    def supported(self) -> set[str]:
        return set(map(str.lower, filter(None, self.headers.get_all("Supported"))))

    @lazy
    def require(self) -> set[str]:
        return set(map(str.lower, filter(None, self.headers.get_all("Require"))))

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The message on the wire; Content-Length always states the length of the body."""
        headers = self.headers
        lines = headers._all()
        if "content-length" not in headers._index and lines:  # one join, one encode
            try:
                text = "\r\n".join(map(": ".join, lines))
            except TypeError:  # a value that is not a str: formatted line by line below
                pass
            else:
                return (f"{self._start_line()}{text}\r\nContent-Length: {len(self.body)}\r\n\r\n"
                        .encode("utf-8", "surrogateescape") + self.body)
        length = f"Content-Length: {len(self.body)}\r\n"
        out = [self._start_line()]
        for name, value in lines:
            if name == "Content-Length":
                out.append(length)
                length = ""
            else:
                out.append(f"{name}: {value}\r\n")
        out.append(length)
        out.append("\r\n")
        return "".join(out).encode("utf-8", "surrogateescape") + self.body


class Request(_Message):
    def __init__(self, method: str, uri: str, headers: HeaderItems = None,
                 body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    @lazy
    def request_uri(self) -> SipUri:
        return parse_uri(self.uri)

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0\r\n"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(_Message):
    def __init__(self, status: int, reason: str, headers: HeaderItems = None,
                 body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}\r\n"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def make_response(request: Request, status: int, reason: str, to_tag: str | None = None, *,
                  source: tuple[str, int] | None = None, date: float | None = None) -> Response:
    """A response to `request` as RFC 3261 8.2.6.2 builds it: every Via in order, From, To
    (with `to_tag` added when the request's To has no tag), Call-ID and CSeq; empty body.
    With `source` (the address the request came from) the top Via gets `received` and `rport`
    as RFC 3261 18.2.1 and RFC 3581 4 ask; with `date` (Unix seconds) a Date header."""
    values_of = request.headers._index.get
    vias = list(values_of("via", ()))
    if source is not None and vias:
        vias[0] = stamped_top_via(request.vias[0], vias[0], source)
    to = values_of("to")
    if not to:
        raise SipParseError(400, "Missing To")
    to = to[0]
    if to_tag is not None and request.to.tag is None:
        to = f"{to};tag={to_tag}"
    from_, call_id, cseq = values_of("from"), values_of("call-id"), values_of("cseq")
    if not (from_ and call_id and cseq):
        for values, name in ((from_, "From"), (call_id, "Call-ID"), (cseq, "CSeq")):
            if not values:
                raise SipParseError(400, f"Missing {name}")
    from_, call_id, cseq = from_[0], call_id[0], cseq[0]
    headers = _new(Headers)
    headers._index = {"via": vias, "from": [from_], "to": [to], "call-id": [call_id],
                      "cseq": [cseq]}
    headers._lines = [("Via", via) for via in vias]
    headers._lines += (("From", from_), ("To", to), ("Call-ID", call_id), ("CSeq", cseq))
    if date is not None:  # RFC 3261 20.17: the RFC 1123 form, always GMT
        headers._index["date"] = [http_date(int(date))]
        headers._lines.append(("Date", headers._index["date"][0]))
    headers._raw = None
    response = _new(Response)
    response.__dict__ = {"headers": headers, "body": b"", "status": status, "reason": reason}
    return response


@lru_cache(maxsize=2)
def http_date(second: int) -> str:
    """One formatting a second: a busy transport dates thousands of responses alike."""
    return formatdate(second, usegmt=True)


def stamped_top_via(top: Via, first_line: str, source: tuple[str, int]) -> str:
    """The first Via line, whose first Via is ``top``, with the sender's address written into
    ``top``: `received` when the sent-by host is not the source address or `rport` asks for
    it, `rport=<port>` when asked (so a UE behind NAT learns what it looks like from here)."""
    host, port = source
    asked = "rport" in top.params
    if not asked and top.host.strip("[]").lower() == host.lower():
        return first_line
    params = {**top.params, "received": host}
    if asked:
        params["rport"] = str(port)
    stamped = str(Via(top.protocol, top.transport, top.host, top.port, params))
    rest = split_header_values(first_line)[1:]
    return ", ".join([stamped, *rest])


_new = object.__new__
