"""Bytes of one SIP message (a datagram, or a frame cut by StreamFramer) to a Request or
Response (RFC 3261 section 7, with the leniency and strictness RFC 4475 asks for).

Header values stay unparsed, except those a server needs to answer at all (Via, CSeq,
Call-ID, From, To, the Request-URI): they are checked here, so that building a response to
a message that parsed cannot fail.
"""
from __future__ import annotations

import re

from .errors import MALFORMED_INPUT_ERRORS, SipParseError
from .grammar import is_token
from .headers import parse_int_header
from .message import Headers, Request, Response
from .names import KNOWN, header_key

_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE).fullmatch
_STATUS_CODE = re.compile("[1-6][0-9][0-9]").fullmatch
_REQUIRED = (("to", "To"), ("from", "From"), ("cseq", "CSeq"), ("call-id", "Call-ID"),
             ("via", "Via"))
_SINGLE = _REQUIRED[:4] + (("max-forwards", "Max-Forwards"), ("content-length", "Content-Length"))


def parse_message(data: bytes, *, max_size: int = 65535, max_headers: int = 256,
                  max_line: int = 8192) -> Request | Response:
    """Raises SipParseError, and nothing else, when `data` is not an acceptable message."""
    if len(data) > max_size:
        raise SipParseError(513, "Message Too Large")
    try:
        start_line, lines, index, body_at = _split(data, max_headers, max_line)
        for key, name in _SINGLE:
            values = index.get(key)
            if values is not None and len(values) > 1:
                raise SipParseError(400, f"Multiple {name}")
        message = _start(start_line, Headers._parsed(lines, index), _body(data, body_at, index))
        for key, name in _REQUIRED:
            if key not in index:
                raise SipParseError(400, f"Missing {name}")
        _check(message)
    except SipParseError:
        raise
    except MALFORMED_INPUT_ERRORS as exc:
        raise SipParseError(400, "Malformed message") from exc
    return message


def parse_head(data: bytes, *, max_headers: int = 256,
               max_line: int = 8192) -> tuple[str, Headers, int]:
    """The start line, the headers (values unchecked) and the offset of the body."""
    try:
        start_line, lines, index, body_at = _split(data, max_headers, max_line)
    except MALFORMED_INPUT_ERRORS as exc:
        raise SipParseError(400, "Malformed message") from exc
    return start_line, Headers._parsed(lines, index), body_at


def _split(data: bytes, max_headers: int, max_line: int):
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
    lines: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    known_spelling, add_line, values_of = KNOWN.get, lines.append, index.get  # hot loop
    for line in raw[1:]:
        name, colon, value = line.partition(":")
        known = known_spelling(name)
        if known is None:
            if line[:1] in (" ", "\t"):  # LWS continuation: the line break counts as one SP
                _fold(line, lines, index)
                continue
            if not colon:
                raise SipParseError(400, "Bad header line")
            name = name.rstrip(" \t")  # HCOLON allows whitespace before the colon
            known = KNOWN.get(name) or KNOWN.get(name.lower())
            if known is None:
                if is_token(name) is None:
                    raise SipParseError(400, "Bad header name")
                known = (name, name.lower())
        value = value.strip(" \t")
        add_line((known[0], value))
        values = values_of(known[1])
        if values is None:
            index[known[1]] = [value]
        else:
            values.append(value)
    return raw[0], lines, index, end + 4


def _fold(continuation: str, lines: list[tuple[str, str]], index: dict[str, list[str]]) -> None:
    """Appends a continuation line to the value of the header line before it."""
    if not lines:
        raise SipParseError(400, "Continuation of the start line")
    name, value = lines[-1]
    more = continuation.strip(" \t")
    value = f"{value} {more}" if value and more else value or more
    lines[-1] = (name, value)
    index[header_key(name)][-1] = value


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
    _check_version(version)
    if is_token(method) is None:
        raise SipParseError(400, "Bad method")
    return Request(method, uri, headers, body)


def _check(message: Request | Response) -> None:
    """Parses (and so caches) every header a response is built from."""
    message.vias
    _, method = message.cseq
    message.call_id
    message.from_
    message.to
    if isinstance(message, Request):
        if method != message.method:
            raise SipParseError(400, "CSeq method mismatch")
        try:
            uri = message.request_uri
        except SipParseError:
            raise SipParseError(400, "Bad Request-URI") from None
        if uri.opaque is not None:
            raise SipParseError(416, "Unsupported URI Scheme")
        if uri.headers:  # RFC 3261 19.1.1: headers are not allowed in a Request-URI
            raise SipParseError(400, "Bad Request-URI")
