"""From a parsed SUBSCRIBE or PUBLISH to what the reg event package needs (pure).

Only the `reg` event is served here (489 otherwise, RFC 6665 7.2.2); anything else the request
lacks is a SipParseError carrying the 400 to answer.
"""
from __future__ import annotations

from actors.reg_event.subscription import EVENT_PACKAGE, dialog_presentity
from actors.vocabulary import PublishRequest, SubscribeRequest
from transport.sip.errors import SipParseError
from transport.sip.headers import STAR, parse_name_addr, split_header_values
from transport.sip.message import Request
from transport.sip.parser import require_utf8

# Headers whose text a subscription keeps (stored with the IMPU) or a PUBLISH acts on.
_SUBSCRIBE_KEPT = ("Request-URI", "From", "To", "Contact", "Record-Route",
                   "P-Asserted-Identity", "Event")
_PUBLISH_KEPT = ("Request-URI", "From", "P-Asserted-Identity", "Event")


class BadEvent(Exception):
    """The request is for an event package we do not serve: 489 Bad Event."""


def event_id(request: Request) -> str | None:
    """The Event header's package must be reg; returns its id parameter."""
    event = request.headers.get("Event")
    if event is None:
        raise BadEvent("no Event header")
    package, *params = (part.strip() for part in event.split(";"))
    if package.lower() != EVENT_PACKAGE:
        raise BadEvent(package)
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "id":
            return value.strip()
    return None


def asserted_identity(request: Request) -> str | None:
    value = request.headers.get("P-Asserted-Identity")
    if not value:
        return None
    return parse_name_addr(split_header_values(value)[0]).uri.aor()


def subscribe_request(request: Request, received: str, transport: str, to_tag: str) -> SubscribeRequest:
    """``to_tag`` is the tag our response adds when the SUBSCRIBE opens the dialog."""
    require_utf8(request, _SUBSCRIBE_KEPT)
    ident = event_id(request)
    contacts = request.contacts
    if contacts is STAR or not contacts:
        raise SipParseError(400, "SUBSCRIBE needs one Contact")
    existing_tag = request.to.params.get("tag")
    route_set = tuple(request.headers.get_all("Record-Route"))
    for route in route_set:  # the NOTIFYs route on these: refused now rather than unsendable
        values = split_header_values(route)
        if not values:
            raise SipParseError(400, "Empty Record-Route")
        for value in values:
            parse_name_addr(value)
    # A refresh sent to the Contact we gave names its presentity there; one sent to the
    # presentity itself (as many UAs do) is routed by it.
    in_dialog = None if existing_tag is None else dialog_presentity(request.request_uri)
    return SubscribeRequest(
        presentity=in_dialog or request.request_uri.aor(),
        watcher=str(request.from_.uri),
        asserted=asserted_identity(request),
        call_id=request.call_id,
        from_tag=request.from_.params.get("tag") or "",
        to_tag=existing_tag or to_tag,
        initial=existing_tag is None,
        remote_target=str(contacts[0].uri),
        route_set=route_set,
        cseq=request.cseq[0],
        expires=request.expires,
        event_id=ident,
        received=received,
        transport=transport,
        transaction=(request.call_id, request.cseq[0], request.vias[0].branch),
    )


def publish_request(request: Request) -> PublishRequest:
    require_utf8(request, _PUBLISH_KEPT)
    event_id(request)
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/reginfo+xml":
        raise SipParseError(415, "Unsupported Media Type")
    return PublishRequest(
        presentity=request.request_uri.aor(),
        watcher=str(request.from_.uri),
        asserted=asserted_identity(request),
        body=request.body,
        expires=request.expires,
        transaction=(request.call_id, request.cseq[0], request.vias[0].branch),
    )
