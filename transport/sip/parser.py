"""Bytes of one SIP message (a datagram, or a frame cut by StreamFramer) to a Request or
Response (RFC 3261 section 7, with the leniency and strictness RFC 4475 asks for).

Header values stay unparsed, except those a server needs to answer at all (Via, CSeq,
Call-ID, From, To, the Request-URI): they are checked here, so that building a response to
a message that parsed cannot fail. CSeq, Call-ID and To are parsed here; a Via, From or
Request-URI of the usual shape is only checked here, and built when first read.
"""
from __future__ import annotations

import re

from .errors import MALFORMED_INPUT_ERRORS, SipParseError
from .grammar import is_token
from .headers import (
    METHODS,
    is_plain_name_addr,
    is_plain_via,
    parse_cseq,
    parse_int_header,
    parse_name_addr,
)
from .message import CALL_ID, Headers, Request, Response, other_name, read_header_lines
from .names import KNOWN
from .uri import is_plain_request_uri, parse_uri

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")  # all C0 controls but HTAB, and DEL

_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE).fullmatch
_STATUS_CODE = re.compile("[1-6][0-9][0-9]").fullmatch
_REQUIRED = (("to", "To"), ("from", "From"), ("cseq", "CSeq"), ("call-id", "Call-ID"),
             ("via", "Via"))
_SINGLE = _REQUIRED[:4] + (("max-forwards", "Max-Forwards"), ("content-length", "Content-Length"))
_SINGLE_KEYS = frozenset(key for key, _ in _SINGLE)
_new = object.__new__


def parse_message(data: bytes, *, max_size: int = 65535, max_headers: int = 256,
                  max_line: int = 8192) -> Request | Response:
    """Raises SipParseError, and nothing else, when `data` is not an acceptable message."""
    if len(data) > max_size:
        raise SipParseError(513, "Message Too Large")
    try:
        start_line, lines, index, raw, body_at, repeated = _split(data, max_headers, max_line)
        if repeated:
            for key, name in _SINGLE:
                values = index.get(key)
                if values is not None and len(values) > 1:
                    raise SipParseError(400, f"Multiple {name}")
        headers = _new(Headers)
        headers._lines = lines
        headers._index = index
        headers._raw = raw
        message = _start(start_line, headers, _body(data, body_at, index))
        message.wire = data
        if not ("to" in index and "from" in index and "cseq" in index and "call-id" in index
                and "via" in index):
            for key, name in _REQUIRED:
                if key not in index:
                    raise SipParseError(400, f"Missing {name}")
        _check(message, index)
    except SipParseError:
        raise
    except MALFORMED_INPUT_ERRORS as exc:
        raise SipParseError(400, "Malformed message") from exc
    return message


def require_utf8(request: Request, names: tuple[str, ...]) -> None:
    """Header text is decoded with surrogateescape, so bytes that are not UTF-8 survive as
    lone surrogates that no store or Diameter encoder accepts: refused here, naming the header,
    before any of it is kept or sent on. So are control characters (NUL, ESC...), which XML
    cannot carry: a Contact holding one would fail every reginfo NOTIFY of its identity. The
    Request-URI is named as "Request-URI"."""
    for name in names:
        values = [request.uri] if name == "Request-URI" else request.headers.lines(name)
        for value in values:
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise SipParseError(400, f"Invalid UTF-8 in {name}") from None
            if _CONTROL.search(value):
                raise SipParseError(400, f"Control character in {name}")


def parse_head(data: bytes, *, max_headers: int = 256,
               max_line: int = 8192) -> tuple[str, Headers, int]:
    """The start line, the headers (values unchecked) and the offset of the body."""
    try:
        start_line, lines, index, raw, body_at, _ = _split(data, max_headers, max_line)
    except MALFORMED_INPUT_ERRORS as exc:
        raise SipParseError(400, "Malformed message") from exc
    return start_line, Headers._parsed(lines, index, raw), body_at


def _split(data: bytes, max_headers: int, max_line: int):
    """The start line, the header lines (None: still to be read from the raw lines, see
    Headers), their index, the raw header lines, the offset of the body, and whether a header
    that must not repeat does."""
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 7.5: CRLFs before the start line
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise SipParseError(400, "Missing end of headers")
    raw = data[start:end].decode("utf-8", "surrogateescape").split("\r\n")
    joined = "".join(raw)
    if "\r" in joined or "\n" in joined:
        raise SipParseError(400, "Bare CR or LF")
    if len(raw) > max_headers + 1:
        raise SipParseError(400, "Too many headers")
    if len(joined) > max_line and max(map(len, raw)) > max_line:
        raise SipParseError(400, "Line too long")
    start_line = raw.pop(0)
    # Only the index is built here: most messages are never iterated nor re-serialized. A
    # folded message is left to read_header_lines, which builds both at once.
    index: dict[str, list[str]] = {}
    repeated = False  # whether a header that must not repeat does
    known_spelling, values_of = KNOWN.get, index.get  # hot loop
    for line in raw:
        name, colon, value = line.partition(":")
        known = known_spelling(name)
        if known is None:
            if line[:1] in (" ", "\t"):  # a continuation line
                lines, index = read_header_lines(raw)
                repeated = any(len(index.get(key, ())) > 1 for key in _SINGLE_KEYS)
                return start_line, lines, index, None, end + 4, repeated
            known = other_name(name, colon)
        key = known[1]
        value = value.strip(" \t")
        values = values_of(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
            if key in _SINGLE_KEYS:
                repeated = True
    return start_line, None, index, raw, end + 4, repeated


def _body(data: bytes, at: int, index: dict[str, list[str]]) -> bytes:
    """RFC 3261 18.3: octets past Content-Length are dropped; without the header the body is
    the rest of the datagram (a stream framer has already cut the message)."""
    values = index.get("content-length")
    if values is None:
        return data[at:]
    length = parse_int_header(values[0], "Content-Length")
    if at + length > len(data):
        raise SipParseError(400, "Content-Length mismatch")
    return data[at:at + length]


def _check_version(version: str) -> None:
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if _VERSION(version):
            raise SipParseError(505, "Version Not Supported")
        raise SipParseError(400, "Bad SIP version")


def _start(start_line: str, headers: Headers, body: bytes) -> Request | Response:
    if start_line.startswith("SIP/"):
        version, _, rest = start_line.partition(" ")
        code, _, reason = rest.partition(" ")
        _check_version(version)
        if _STATUS_CODE(code) is None:
            raise SipParseError(400, "Bad status code")
        return Response(int(code), reason, headers, body)
    parts = start_line.split(" ")  # exactly one SP between the elements (RFC 4475 3.1.2.9)
    if len(parts) != 3 or not parts[1]:
        raise SipParseError(400, "Bad request line")
    method, uri, version = parts
    if version != "SIP/2.0":
        _check_version(version)
    if method not in METHODS and is_token(method) is None:
        raise SipParseError(400, "Bad method")
    request = _new(Request)
    request.__dict__ = {"headers": headers, "body": body, "method": method, "uri": uri}
    return request


def _check(message: Request | Response, index: dict[str, list[str]]) -> None:
    """Parses, and so caches, or checks every header a response is built from, in the order
    of the lazy attributes of the message that read them (the first error wins)."""
    cached = message.__dict__
    attribute = "vias"
    try:
        for value in index["via"]:
            if "," in value or is_plain_via(value) is None:
                message.vias  # the general path: parsed now, and the error if there is one
                break
        attribute = "cseq"
        cached["cseq"] = cseq = parse_cseq(index["cseq"][0])
        attribute = "call_id"
        call_id = index["call-id"][0]
        if CALL_ID(call_id) is None:
            raise SipParseError(400, "Bad Call-ID")
        cached["call_id"] = call_id
        attribute = "from_"
        value = index["from"][0]
        if is_plain_name_addr(value) is None:
            cached["from_"] = parse_name_addr(value)
        attribute = "to"
        cached["to"] = parse_name_addr(index["to"][0])
    except SipParseError:
        raise
    except MALFORMED_INPUT_ERRORS as exc:  # as the lazy attribute would have reported it
        raise SipParseError(400, f"Bad {attribute}") from exc
    if isinstance(message, Request):
        if cseq[1] != message.method:
            raise SipParseError(400, "CSeq method mismatch")
        if is_plain_request_uri(message.uri):
            return  # parses, is a sip or sips URI, has no headers: built when first read
        try:
            uri = parse_uri(message.uri)
        except (SipParseError, *MALFORMED_INPUT_ERRORS):
            raise SipParseError(400, "Bad Request-URI") from None
        cached["request_uri"] = uri
        if uri.opaque is not None:
            raise SipParseError(416, "Unsupported URI Scheme")
        if uri.headers:  # RFC 3261 19.1.1: headers are not allowed in a Request-URI
            raise SipParseError(400, "Bad Request-URI")
