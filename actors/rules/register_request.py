"""From a parsed SIP REGISTER to the registrar's RegisterRequest (pure).

Anything the registrar cannot use is a SipParseError carrying the 400 and reason to answer.
"""
from __future__ import annotations

import re

from actors.rules.charging import icid
from actors.vocabulary import ContactRequest, RegisterRequest
from transport.sip.errors import SipParseError
from transport.sip.headers import MAX_UINT32, STAR, NameAddr
from transport.sip.message import Request
from transport.sip.parser import require_utf8
from transport.sip.uri import SipUri

MAX_EXPIRES = MAX_UINT32  # RFC 3261 10.2.1.1: larger values count as this
_Q_VALUE = re.compile(r"^(0(\.\d{0,3})?|1(\.0{0,3})?)$")
# One auth-param (RFC 7235 2.1): a quoted value is taken whole, so text inside it is no param.
_AUTH_PARAM = re.compile(r'([\w.!%*+`\'~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))')
# Headers whose text is stored with the binding or sent to the HSS.
_KEPT_HEADERS = ("To", "Contact", "Path", "User-Agent", "Allow", "Authorization",
                 "P-Charging-Vector", "P-Visited-Network-ID")


def register_request(req: Request, received: str, realm: str | None = None) -> RegisterRequest:
    """``realm`` picks the Authorization header meant for us; by default the Request-URI's
    host, the home domain a REGISTER is sent to (TS 24.229 5.1.1.2.1)."""
    require_utf8(req, _KEPT_HEADERS)
    to_uri = req.to.uri
    if to_uri.scheme not in ("sip", "sips", "tel"):
        raise SipParseError(400, "Unsupported To URI scheme")
    aor = to_uri.aor()
    contacts = req.contacts
    star = contacts is STAR
    cseq, _ = req.cseq
    credentials = req.headers.get_all("Authorization")
    authorization = (our_authorization(credentials, realm or req.request_uri.host)
                     if credentials else None)
    params = {} if authorization is None else auth_params(authorization)
    return RegisterRequest(
        aor=aor,
        impi=private_identity(params.get("username"), to_uri),
        call_id=req.call_id,
        cseq=cseq,
        contacts=[] if star else [contact_request(c) for c in contacts],
        star=star,
        expires=_expires(req.expires),
        path=tuple(req.headers.get_all("Path")),
        path_supported="path" in req.supported,
        transaction=(req.call_id, cseq, req.vias[0].branch),
        received=received,
        user_agent=req.headers.get("User-Agent"),
        allow=method_list(req.headers.get_all("Allow")),
        authorization=authorization,
        integrity_protected=params.get("integrity-protected"),
        icid=icid(req.headers.get("P-Charging-Vector")),
        visited_network=req.headers.get("P-Visited-Network-ID"),
    )


def our_authorization(values: list[str], realm: str) -> str | None:
    """The first Authorization whose realm is ours, or the only one there is (RFC 3261 22.4:
    credentials for other realms belong to other servers)."""
    for value in values:
        if auth_params(value).get("realm", "").lower() == realm.lower():
            return value
    return values[0] if len(values) == 1 else None


def auth_params(value: str) -> dict[str, str]:
    """The parameters of credentials, names lowercased, quoted values unescaped; lenient
    (the authentication parses strictly and answers 400), the first of a repeated one wins."""
    params: dict[str, str] = {}
    for match in _AUTH_PARAM.finditer(value):
        name, quoted, token = match.groups()
        params.setdefault(name.lower(),
                          token if quoted is None else re.sub(r"\\(.)", r"\1", quoted))
    return params


def private_identity(username: str | None, to_uri: SipUri) -> str | None:
    """TS 24.229 5.4.1.2.1: the IMPI is the Authorization username; without one (no auth on
    this hop), the IMPU's user@host form, as the HSS emulator and Kamailio both assume."""
    if username:
        return username
    if to_uri.scheme in ("sip", "sips") and to_uri.user:
        return f"{to_uri.user}@{to_uri.host.lower()}"
    return None


def contact_request(contact: NameAddr) -> ContactRequest:
    params = contact.params
    q = params.get("q")
    if q is not None and not _Q_VALUE.match(q):
        raise SipParseError(400, "Bad q value in Contact")
    instance = params.get("+sip.instance")
    reg_id = params.get("reg-id")
    # Unsigned 32 bits, as Kamailio reads it: the store keeps no larger integer.
    if reg_id is not None and not (_digits(reg_id) and _capped(reg_id) <= MAX_UINT32):
        raise SipParseError(400, "Bad reg-id in Contact")
    expires = params.get("expires")
    if expires is not None and not _digits(expires):
        raise SipParseError(400, "Bad expires parameter in Contact")
    uri = contact.uri
    return ContactRequest(
        uri=str(uri),
        key=binding_key(uri, instance, reg_id),
        expires=None if expires is None else min(_capped(expires), MAX_EXPIRES),
        q=q,
        instance=instance,
        reg_id=None if reg_id is None else _capped(reg_id),
        params=tuple((k, v) for k, v in params.items() if k != "expires"),
        allow=method_list((params.get("methods") or "").strip('"').split(",")),
    )


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # isdigit() alone takes "²" too


def _capped(digits: str) -> int:
    """ASCII digits as a number, or MAX_UINT32 + 1 for any larger one: int() refuses more
    than 4,300 digits, and a 400 must not become a 500."""
    digits = digits.lstrip("0")
    return int(digits or "0") if len(digits) <= 10 else MAX_UINT32 + 1


def method_list(names) -> tuple[str, ...]:
    """Method names of an Allow header or a `methods` Contact parameter, upper case."""
    return tuple(dict.fromkeys(n.strip().upper() for n in names if n.strip()))


def binding_key(uri: SipUri, instance: str | None, reg_id: str | None) -> str:
    """RFC 5626: a binding is the instance's flow when the UA names its instance; otherwise
    its Contact URI compared as RFC 3261 19.1.4 says (host case-insensitive, params unordered)."""
    if instance is not None:
        return f"instance:{instance}|{reg_id or ''}"
    params = ";".join(
        f"{k}={v.lower()}" if v is not None else k for k, v in sorted(uri.params.items())
    )
    port = uri.port or ""
    return f"uri:{uri.scheme}:{uri.user or ''}@{uri.host.lower()}:{port};{params}"


def _expires(value: int | None) -> int | None:
    return None if value is None else min(value, MAX_EXPIRES)
