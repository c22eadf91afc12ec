"""The answer to a request that failed to parse (RFC 3261 8.2.6 and 21.4.1): its status and
reason phrase, built from the headers that did parse. None when there is nothing to answer:
a response, or a request lacking a Via, From, To, Call-ID or CSeq to echo.

A request whose Via, From, To or CSeq is malformed is still answered when each can be read
as a line: the response echoes them verbatim, which is all a client needs to match it to its
transaction (top Via and CSeq), so it stops retransmitting instead of trying for 32 s.
"""
from __future__ import annotations

import re

from .errors import SipParseError
from .message import Request, Response, make_response
from .parser import parse_head

# Enough of a CSeq for the client to match the method: digits (however many), the method.
_READABLE_CSEQ = re.compile(r"[0-9]+[ \t]+[!-~]+").fullmatch
_ECHOED = ("Via", "From", "To", "Call-ID", "CSeq")


def error_response(data: bytes, error: SipParseError, to_tag: str | None = None) -> Response | None:
    try:
        start_line, headers, _ = parse_head(data)
    except SipParseError:
        return None
    if start_line.startswith("SIP/"):
        return None
    request = Request(start_line.split(" ", 1)[0], "", headers)
    try:
        request.vias, request.from_, request.call_id, request.cseq
    except SipParseError:
        if not _readable(headers):
            return None
    try:
        request.to
    except SipParseError:
        if not _readable(headers):
            return None
        to_tag = None  # echoed as received: a To that does not parse has no place for a tag
    return make_response(request, error.status, error.reason, to_tag)


def _readable(headers) -> bool:
    values = {key: headers.lines(key) for key in _ECHOED}
    if not all(values.values()) or any(len(values[key]) > 1 for key in _ECHOED[1:]):
        return False
    return (values["Via"][0].upper().startswith("SIP/2.0/")
            and _READABLE_CSEQ(values["CSeq"][0]) is not None)
