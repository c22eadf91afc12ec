"""The ``application/reginfo+xml`` document of the reg event package (RFC 3680 section 5).

Builds NOTIFY bodies from a change of bindings (TS 24.229 5.4.2.1.2) and reads PUBLISH bodies.
Element ids are digests of the identities they stand for, so a watcher sees the same binding
under the same id in every NOTIFY (RFC 3680 5.1), whichever process builds it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from lxml import etree

from actors.rules.impu import ordered
from actors.vocabulary import Binding, Profile

NS = "urn:ietf:params:xml:ns:reginfo"
CONTENT_TYPE = "application/reginfo+xml"
DOCUMENT_STATES = ("full", "partial")
REGISTRATION_STATES = ("init", "active", "terminated")
CONTACT_STATES = ("active", "terminated")
CONTACT_EVENTS = ("registered", "created", "refreshed", "shortened", "expired", "deactivated",
                  "probation", "unregistered", "rejected")
# Why bindings went away -> the event of their terminated contacts (RFC 3680 5.1.2): a REGISTER
# with expires 0, expiry, a network de-registration the UE should answer by registering again
# (RTR, administrative), or one it should not (TS 24.229 5.4.1.5: permanent termination).
REMOVAL_EVENTS = {"user": "unregistered", "expired": "expired", "network": "deactivated",
                  "rejected": "rejected"}

_DECLARATION = b'<?xml version="1.0"?>\n'
_UNSIGNED = re.compile("[0-9]+").fullmatch
# Parsing a body from the network: no DTD, no entities, nothing fetched.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          dtd_validation=False, huge_tree=False)


class ReginfoError(ValueError):
    """A reginfo document (or the data for one) that is not valid RFC 3680 reginfo."""


@dataclass(slots=True)
class ContactInfo:
    uri: str
    state: str  # CONTACT_STATES
    event: str  # CONTACT_EVENTS
    expires: int | None = None
    q: str | None = None
    call_id: str | None = None
    cseq: int | None = None
    unknown_params: list[tuple[str, str | None]] = field(default_factory=list)
    display_name: str | None = None
    id: str = field(kw_only=True)  # contact_id(aor, binding key)


@dataclass(slots=True)
class RegistrationInfo:
    aor: str
    state: str  # REGISTRATION_STATES
    contacts: list[ContactInfo]
    id: str = field(default="", kw_only=True)  # registration_id(aor) unless given

    def __post_init__(self) -> None:
        if not self.id:
            self.id = registration_id(self.aor)


def registration_id(aor: str) -> str:
    return _digest(aor)


def contact_id(aor: str, binding_key: str) -> str:
    return _digest(f"{aor}\n{binding_key}")


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def registration_infos(
    profile: Profile | None, identity: str, old: dict[str, Binding], new: dict[str, Binding],
    now: float, reason: str, ended: frozenset[str] = frozenset(),
) -> list[RegistrationInfo]:
    """The registrations of `identity`'s implicit set after its bindings went from `old` to
    `new`; `reason` says why bindings missing from `new` went away (a REMOVAL_EVENTS key).

    Every IMPU of the set shares the bindings. TS 24.229 5.4.2.1.2 asks for one <registration>
    per public user identity of the user; barred ones are left out, as from P-Associated-URI
    (5.4.1.2.2) and from the watchers allowed to subscribe (5.4.2.1.1): a barred identity is
    never registered and is not disclosed to the UE. ``ended``: identities barred just now
    (a pushed profile), shown once more as terminated, every contact "rejected", so that
    watchers learn their registration ended (RFC 3680 5.1.2).
    """
    removal = REMOVAL_EVENTS.get(reason)
    if removal is None:
        raise ValueError(f"unknown removal reason {reason!r}")
    aors = profile.associated_uris() if profile else [identity]
    live = ordered(new.values())
    gone = [old[key] for key in sorted(old.keys() - new.keys())]
    registrations = [_registration(aor, aor == identity, live, gone, old, now, removal)
                     for aor in aors]
    every = ordered(old.values())
    return registrations + [_registration(aor, False, [], every, old, now, "rejected")
                            for aor in sorted(ended)]


def _registration(
    aor: str, explicit: bool, live: list[Binding], gone: list[Binding],
    old: dict[str, Binding], now: float, removal: str,
) -> RegistrationInfo:
    # TS 24.229 5.4.2.1.2: the identity the REGISTER named is "registered"; the others of its
    # implicit set are registered automatically, which RFC 3680 calls "created".
    arrival = "registered" if explicit else "created"
    contacts = [
        _contact(aor, b, "active", _change(old.get(b.key), b, arrival), b.remaining(now))
        for b in live
    ]
    contacts += [_contact(aor, b, "terminated", removal, 0) for b in gone]
    state = "active" if live else "terminated" if gone else "init"
    return RegistrationInfo(aor, state, contacts)


def _change(before: Binding | None, after: Binding, arrival: str) -> str:
    if before is None or before == after:
        return arrival
    return "shortened" if after.expires_at < before.expires_at else "refreshed"


def _contact(aor: str, binding: Binding, state: str, event: str, expires: int) -> ContactInfo:
    return ContactInfo(
        uri=binding.uri,
        state=state,
        event=event,
        expires=expires,
        q=binding.q,
        call_id=binding.call_id,
        cseq=binding.cseq,
        # q has its own attribute; every other Contact parameter is an unknown-param (RFC 3680
        # 5.1), +sip.instance and reg-id included (TS 24.229 5.4.2.1.2).
        unknown_params=[(name, value) for name, value in binding.params if name.lower() != "q"],
        id=contact_id(aor, binding.key),
    )


def build_reginfo(version: int, state: str, registrations: list[RegistrationInfo]) -> bytes:
    """The reginfo document; strings must hold only characters XML allows (lxml raises
    ValueError otherwise), escaping is lxml's."""
    _one_of(state, DOCUMENT_STATES, "reginfo state")
    if version < 0:
        raise ReginfoError("negative reginfo version")
    root = etree.Element(_tag("reginfo"), {"version": str(version), "state": state},
                         nsmap={None: NS})
    for registration in registrations:
        _one_of(registration.state, REGISTRATION_STATES, "registration state")
        element = etree.SubElement(root, _tag("registration"), {
            "aor": registration.aor, "id": registration.id, "state": registration.state})
        for contact in registration.contacts:
            _contact_element(element, contact)
    return _DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def _contact_element(parent: etree._Element, contact: ContactInfo) -> None:
    _one_of(contact.state, CONTACT_STATES, "contact state")
    _one_of(contact.event, CONTACT_EVENTS, "contact event")
    attributes = {"id": contact.id, "state": contact.state, "event": contact.event}
    optional = (("expires", contact.expires), ("q", contact.q), ("callid", contact.call_id),
                ("cseq", contact.cseq))
    attributes.update((name, str(value)) for name, value in optional if value is not None)
    element = etree.SubElement(parent, _tag("contact"), attributes)
    etree.SubElement(element, _tag("uri")).text = contact.uri
    if contact.display_name is not None:
        etree.SubElement(element, _tag("display-name")).text = contact.display_name
    for name, value in contact.unknown_params:
        etree.SubElement(element, _tag("unknown-param"), {"name": name}).text = value


def parse_reginfo(body: bytes) -> list[RegistrationInfo]:
    """The registrations of a PUBLISHed reginfo document. Anything malformed, a DOCTYPE (so no
    entity of any kind) or a missing required attribute is a ReginfoError."""
    try:
        root = etree.fromstring(body, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise ReginfoError(f"not well-formed XML: {exc}") from exc
    if root.getroottree().docinfo.doctype:
        raise ReginfoError("DOCTYPE not allowed")
    if root.tag != _tag("reginfo"):
        raise ReginfoError("root element is not reginfo")
    _unsigned(_required(root, "version"), "version")
    _one_of(_required(root, "state"), DOCUMENT_STATES, "reginfo state")
    return [_parse_registration(element) for element in root.iterchildren(_tag("registration"))]


def _parse_registration(element: etree._Element) -> RegistrationInfo:
    state = _one_of(_required(element, "state"), REGISTRATION_STATES, "registration state")
    contacts = [_parse_contact(c) for c in element.iterchildren(_tag("contact"))]
    return RegistrationInfo(_required(element, "aor"), state, contacts,
                            id=_required(element, "id"))


def _parse_contact(element: etree._Element) -> ContactInfo:
    uri = element.find(_tag("uri"))
    if uri is None or not uri.text:
        raise ReginfoError("contact without uri")
    display_name = element.find(_tag("display-name"))
    expires, cseq = element.get("expires"), element.get("cseq")
    return ContactInfo(
        uri=uri.text,
        state=_one_of(_required(element, "state"), CONTACT_STATES, "contact state"),
        event=_one_of(_required(element, "event"), CONTACT_EVENTS, "contact event"),
        expires=None if expires is None else _unsigned(expires, "expires"),
        q=element.get("q"),
        call_id=element.get("callid"),
        cseq=None if cseq is None else _unsigned(cseq, "cseq"),
        unknown_params=[(_required(p, "name"), p.text)
                        for p in element.iterchildren(_tag("unknown-param"))],
        display_name=None if display_name is None else display_name.text or "",
        id=_required(element, "id"),
    )


def _tag(name: str) -> str:
    return f"{{{NS}}}{name}"


def _required(element: etree._Element, name: str) -> str:
    value = element.get(name)
    if value is None:
        raise ReginfoError(f"{etree.QName(element).localname} without {name}")
    return value


def _unsigned(text: str, what: str) -> int:
    if not _UNSIGNED(text.strip()):
        raise ReginfoError(f"bad {what} {text!r}")
    return int(text)


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ReginfoError(f"bad {what} {value!r}")
    return value
