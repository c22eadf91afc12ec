"""A final response built from the raw head of a request of the usual shape, without parsing
the request whole (parser.py) nor building a Response: how a transport under overload
refuses most of what arrives, at a third of the cost (actors/hosts/overload.py).

It reads only what a response is made of (RFC 3261 8.2.6.2): the Vias, From, To, Call-ID and
CSeq, checked as the parser checks them, and its bytes are those make_response and
Response.to_bytes give. A request of another shape gets None, and is parsed as usual: a
folded or repeated header, a header name spelled unusually, a Via line holding several Vias,
an RFC 2543 branch, a To that may have a tag, bytes that are not ASCII. The rest of the
request is not looked at: under overload, a request malformed elsewhere is refused, and gets
its 400 when it is sent again.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from .errors import SipParseError
from .headers import is_plain_name_addr, is_plain_via, parse_cseq, parse_via
from .message import CALL_ID, http_date, stamped_top_via
from .names import KNOWN
from .transaction import MAGIC_COOKIE, TransactionKey

# The header lines read, in any case and with any space before the colon, as the parser
# reads them: Via, From, To, Call-ID, CSeq and their compact forms.
_READ_HEADERS = re.compile(
    r"\r\n(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:([^\r\n]*)", re.IGNORECASE).findall


def quick_response(data: bytes, methods: frozenset[str], status: int, reason: str,
                   headers: list[tuple[str, str]], *, to_tag: Callable[[str, int], str],
                   source: tuple[str, int], date: float) -> tuple[TransactionKey, bytes] | None:
    """The server transaction key of the request in ``data`` and the bytes of the response
    ``status`` ``reason`` to it, with ``headers`` after its Date; None unless the request is
    of the usual shape (see above) and its method one of ``methods``. ``to_tag(call_id,
    cseq)`` is the To tag added; ``source`` and ``date`` as for make_response."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    try:
        head = data[:end].decode("ascii")
    except UnicodeDecodeError:
        return None
    if "\r\n " in head or "\r\n\t" in head:
        return None  # a folded header
    line_count = head.count("\r\n") + 1
    if head.count("\r") != line_count - 1 or head.count("\n") != line_count - 1:
        return None  # a bare CR or LF
    request_line = head[:head.find("\r\n")].split(" ")
    if len(request_line) != 3 or request_line[0] not in methods or request_line[2] != "SIP/2.0":
        return None
    method = request_line[0]
    vias: list[str] = []
    values: dict[str, str] = {}
    for name, value in _READ_HEADERS(head):
        key = KNOWN[name.lower()][1]
        if key == "via":
            vias.append(value.strip(" \t"))
        elif key in values:
            return None
        else:
            values[key] = value.strip(" \t")
    if not vias or len(values) != 4:
        return None
    for via in vias:
        if "," in via or is_plain_via(via) is None:
            return None
    top = parse_via(vias[0])
    branch = top.branch
    if branch is None or not branch.startswith(MAGIC_COOKIE) or len(branch) == len(MAGIC_COOKIE):
        return None
    from_, to, call_id, cseq = values["from"], values["to"], values["call-id"], values["cseq"]
    try:
        number, cseq_method = parse_cseq(cseq)
    except SipParseError:
        return None
    if (cseq_method != method or CALL_ID(call_id) is None or is_plain_name_addr(from_) is None
            or is_plain_name_addr(to) is None or "tag" in to.lower()):
        return None
    vias[0] = stamped_top_via(top, vias[0], source)
    text = "".join((
        f"SIP/2.0 {status} {reason}\r\n",
        *(f"Via: {via}\r\n" for via in vias),
        f"From: {from_}\r\nTo: {to};tag={to_tag(call_id, number)}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq}\r\nDate: {http_date(int(date))}\r\n",
        *(f"{name}: {value}\r\n" for name, value in headers),
        "Content-Length: 0\r\n\r\n",
    ))
    return TransactionKey(branch, top.sent_by, method), text.encode("ascii")
