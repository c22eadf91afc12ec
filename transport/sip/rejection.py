"""The answer to a request that failed to parse (RFC 3261 8.2.6 and 21.4.1): its status and
reason phrase, built from the headers that did parse. None when there is nothing to answer:
a response, or a request whose Via/From/To/Call-ID/CSeq are themselves unusable."""
from __future__ import annotations

from .errors import SipParseError
from .message import Request, Response, make_response
from .parser import parse_head


def error_response(data: bytes, error: SipParseError, to_tag: str | None = None) -> Response | None:
    try:
        start_line, headers, _ = parse_head(data)
        if start_line.startswith("SIP/"):
            return None
        request = Request(start_line.split(" ", 1)[0], "", headers)
        request.vias, request.from_, request.to, request.call_id, request.cseq  # all must parse
        return make_response(request, error.status, error.reason, to_tag)
    except SipParseError:
        return None
