"""The IMS user profile carried in Cx User-Data (TS 29.228 annex B model, annex E schema).

Pure: parses and builds the XML, nothing else. The parser never resolves entities, loads DTDs or
touches the network, and refuses any DOCTYPE, since Cx user data has no use for one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from xml.sax.saxutils import escape

from lxml import etree

IDENTITY_TYPE_PUBLIC_USER = 0
IDENTITY_TYPE_DISTINCT_PSI = 1
IDENTITY_TYPE_WILDCARDED_PSI = 2


class UserDataError(ValueError):
    """The user data is not a usable IMSSubscription document."""


@dataclass
class PublicIdentity:
    identity: str
    barred: bool = False
    identity_type: int = IDENTITY_TYPE_PUBLIC_USER
    wildcarded_psi: str | None = None
    display_name: str | None = None

    def matches(self, uri: str) -> bool:
        """Whether `uri` is this identity, or falls under it when it is a wildcarded PSI."""
        if uri == self.identity:
            return True
        if not self.wildcarded_psi:
            return False
        return wildcard_regex(self.wildcarded_psi).fullmatch(uri) is not None


# TS 29.228 B.2.2: DefaultHandling of an ApplicationServer, ProfilePartIndicator of an iFC.
SESSION_CONTINUED = 0
SESSION_TERMINATED = 1
PROFILE_PART_REGISTERED = 0
PROFILE_PART_UNREGISTERED = 1


@dataclass(frozen=True)
class ServicePointTrigger:
    """One SPT: exactly one of method, session_case, header or request_uri is set; a Method
    SPT may narrow REGISTERs to some registration types (TS 29.228 B.2.2 Extension)."""

    negated: bool = False
    groups: tuple[int, ...] = (0,)
    method: str | None = None
    registration_types: tuple[int, ...] = ()  # 0 initial, 1 re-registration, 2 de-registration
    session_case: int | None = None
    header: str | None = None
    header_content: str | None = None  # a regular expression; None: the header is present
    request_uri: str | None = None  # a regular expression


@dataclass(frozen=True)
class TriggerPoint:
    cnf: bool  # ConditionTypeCNF: AND of groups each ORing its SPTs; else OR of ANDed groups
    spts: tuple[ServicePointTrigger, ...]


@dataclass(frozen=True)
class ApplicationServer:
    server_name: str
    default_handling: int = SESSION_CONTINUED
    service_info: str | None = None
    include_register_request: bool = False
    include_register_response: bool = False


@dataclass(frozen=True)
class InitialFilterCriteria:
    priority: int
    trigger_point: TriggerPoint | None  # None: every request matches
    application_server: ApplicationServer
    profile_part: int | None = None


@dataclass
class ServiceProfile:
    public_identities: list[PublicIdentity]
    ifc_xml: list[str] = field(default_factory=list)  # each InitialFilterCriteria, serialized
    cn_services_authorization: dict | None = None  # {"subscribed_media_profile_id": int|None}

    def filter_criteria(self) -> list[InitialFilterCriteria]:
        """The profile's iFCs, highest priority (lowest number) first."""
        return sorted((parse_ifc(xml) for xml in self.ifc_xml), key=lambda ifc: ifc.priority)

    def application_servers(self) -> list[str]:
        """The ServerName of each initial filter criterion, highest priority first."""
        return [ifc.application_server.server_name for ifc in self.filter_criteria()]


@dataclass
class ImsSubscription:
    private_id: str
    service_profiles: list[ServiceProfile]

    def all_identities(self) -> list[str]:
        """Every public identity of the implicit registration set, in document order."""
        return [pi.identity for sp in self.service_profiles for pi in sp.public_identities]

    def unbarred_identities(self) -> list[str]:
        return [pi.identity for sp in self.service_profiles for pi in sp.public_identities
                if not pi.barred]

    def profile_of(self, identity: str) -> ServiceProfile | None:
        """The service profile that applies to `identity` (exact match first, then wildcards)."""
        for profile in self.service_profiles:
            if any(pi.identity == identity for pi in profile.public_identities):
                return profile
        for profile in self.service_profiles:
            if any(pi.matches(identity) for pi in profile.public_identities):
                return profile
        return None


@lru_cache(maxsize=1024)
def wildcard_regex(wildcarded: str) -> re.Pattern:
    """TS 23.003 13.5: the text between two '!' is a regular expression, the rest is literal."""
    parts = wildcarded.split("!")
    if len(parts) % 2 == 0:
        raise UserDataError(f"unbalanced '!' in wildcarded identity {wildcarded!r}")
    try:
        return re.compile("".join(part if i % 2 else re.escape(part)
                                  for i, part in enumerate(parts)))
    except re.error as exc:
        raise UserDataError(f"bad regular expression in {wildcarded!r}: {exc}") from None


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_comments=True)


def parse_user_data(xml: str | bytes, xsd_path: str | None = None,
                    dtd_path: str | None = None) -> ImsSubscription:
    """Parse Cx User-Data; with `xsd_path` / `dtd_path` (the guide's user_data_xsd and
    user_data_dtd), also validate it against that schema / DTD."""
    root = _parse_xml(xml)
    for validator, kind in ((xsd_path and _schema(xsd_path), "schema"), (dtd_path and _dtd(dtd_path), "DTD")):
        if validator and not validator.validate(root):
            raise UserDataError(f"user data does not match the {kind}: "
                                f"{validator.error_log.last_error}")
    if root.tag != "IMSSubscription":
        raise UserDataError(f"root element is <{root.tag}>, expected <IMSSubscription>")
    private_id = _text(root, "PrivateID")
    if not private_id:
        raise UserDataError("IMSSubscription has no PrivateID")
    profiles = [_parse_profile(sp) for sp in _children(root, "ServiceProfile")]
    if not profiles:
        raise UserDataError("IMSSubscription has no ServiceProfile")
    return ImsSubscription(private_id=private_id, service_profiles=profiles)


def _parse_xml(xml: str | bytes) -> etree._Element:
    data = xml.encode() if isinstance(xml, str) else xml
    try:
        tree = etree.fromstring(data, _PARSER).getroottree()
    except etree.XMLSyntaxError as exc:
        raise UserDataError(f"user data is not well-formed XML: {exc}") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UserDataError("user data must not carry a DOCTYPE (entity declarations refused)")
    return tree.getroot()


@lru_cache(maxsize=8)
def _dtd(dtd_path: str) -> etree.DTD:
    try:
        return etree.DTD(dtd_path)
    except (OSError, etree.DTDParseError) as exc:
        raise UserDataError(f"cannot load DTD {dtd_path}: {exc}") from None


@lru_cache(maxsize=8)
def _schema(xsd_path: str) -> etree.XMLSchema:
    try:
        return etree.XMLSchema(etree.parse(xsd_path, _PARSER))
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise UserDataError(f"cannot load schema {xsd_path}: {exc}") from None


def _text(element: etree._Element, path: str) -> str | None:
    """The stripped text at ``path`` (child tags joined by "/"), "" when it has none, None
    when it is missing. Children are walked directly: lxml's find() and findtext() go through
    its Python path engine, several microseconds a call, and every SAA's user data is read."""
    for tag in path.split("/"):
        element = _child(element, tag)
        if element is None:
            return None
    return element.text.strip() if element.text is not None else ""


def _child(element: etree._Element, tag: str) -> etree._Element | None:
    for child in element:
        if child.tag == tag:
            return child
    return None


def _children(element: etree._Element, tag: str) -> list[etree._Element]:
    return [child for child in element if child.tag == tag]


def _parse_profile(profile: etree._Element) -> ServiceProfile:
    identities = [_parse_identity(pi) for pi in _children(profile, "PublicIdentity")]
    if not identities:
        raise UserDataError("ServiceProfile has no PublicIdentity")
    cn_auth = _child(profile, "CoreNetworkServicesAuthorization")
    media_profile = _text(cn_auth, "SubscribedMediaProfileId") if cn_auth is not None else None
    return ServiceProfile(
        public_identities=identities,
        ifc_xml=[etree.tostring(ifc, encoding="unicode").strip()
                 for ifc in _children(profile, "InitialFilterCriteria")],
        cn_services_authorization=None if cn_auth is None else {
            "subscribed_media_profile_id": _int(media_profile, "SubscribedMediaProfileId")})


@lru_cache(maxsize=1024)
def parse_ifc(xml: str) -> InitialFilterCriteria:
    """One serialized InitialFilterCriteria (TS 29.228 B.2.2); regular expressions checked."""
    element = _parse_xml(xml)
    priority = _int(_text(element, "Priority"), "Priority")
    server = element.find("ApplicationServer")
    if server is None or not _text(server, "ServerName"):
        raise UserDataError("InitialFilterCriteria has no ApplicationServer/ServerName")
    trigger = element.find("TriggerPoint")
    return InitialFilterCriteria(
        priority=0 if priority is None else priority,
        trigger_point=None if trigger is None else _parse_trigger_point(trigger),
        application_server=_parse_application_server(server),
        profile_part=_int(_text(element, "ProfilePartIndicator"), "ProfilePartIndicator"))


def _parse_trigger_point(element: etree._Element) -> TriggerPoint:
    return TriggerPoint(cnf=_bool(_text(element, "ConditionTypeCNF"), "ConditionTypeCNF"),
                        spts=tuple(_parse_spt(spt) for spt in element.iterfind("SPT")))


def _parse_spt(element: etree._Element) -> ServicePointTrigger:
    groups = tuple(_int(g.text and g.text.strip(), "Group") for g in element.iterfind("Group"))
    header = element.find("SIPHeader")
    spt = ServicePointTrigger(
        negated=_bool(_text(element, "ConditionNegated") or "0", "ConditionNegated"),
        groups=groups or (0,),
        method=_text(element, "Method"),
        registration_types=tuple(
            _int(t.text and t.text.strip(), "RegistrationType")
            for t in element.iterfind("Extension/RegistrationType")),
        session_case=_int(_text(element, "SessionCase"), "SessionCase"),
        header=None if header is None else _text(header, "Header"),
        header_content=None if header is None else _text(header, "Content"),
        request_uri=_text(element, "RequestURI"))
    if (spt.method, spt.session_case, spt.header, spt.request_uri) == (None,) * 4:
        raise UserDataError("SPT has no Method, SessionCase, SIPHeader or RequestURI")
    for pattern in (spt.header_content, spt.request_uri):
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UserDataError(f"bad regular expression {pattern!r} in SPT: {exc}") from None
    return spt


def _parse_application_server(element: etree._Element) -> ApplicationServer:
    handling = _int(_text(element, "DefaultHandling"), "DefaultHandling")
    if handling not in (None, SESSION_CONTINUED, SESSION_TERMINATED):
        raise UserDataError(f"DefaultHandling is {handling}, not 0 or 1")
    return ApplicationServer(
        server_name=_text(element, "ServerName"),
        default_handling=handling or SESSION_CONTINUED,
        service_info=_text(element, "ServiceInfo"),
        include_register_request=element.find("Extension/IncludeRegisterRequest") is not None,
        include_register_response=element.find("Extension/IncludeRegisterResponse") is not None)


def _bool(value: str | None, name: str) -> bool:
    if value not in ("0", "1", "true", "false"):
        raise UserDataError(f"{name} is {value!r}, not a boolean")
    return value in ("1", "true")


def _parse_identity(element: etree._Element) -> PublicIdentity:
    identity = _text(element, "Identity")
    if not identity:
        raise UserDataError("PublicIdentity has no Identity")
    barring = _text(element, "BarringIndication")
    if barring not in (None, "0", "1", "true", "false"):
        raise UserDataError(f"BarringIndication of {identity} is {barring!r}, not a boolean")
    extension = _child(element, "Extension")
    if extension is None:  # most identities: three lookups fewer for every SAA
        return PublicIdentity(identity=identity, barred=barring in ("1", "true"))
    return PublicIdentity(
        identity=identity,
        barred=barring in ("1", "true"),
        identity_type=_int(_text(extension, "IdentityType"), "IdentityType") or 0,
        wildcarded_psi=_text(extension, "WildcardedPSI"),
        display_name=_text(extension, "Extension/DisplayName"))


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserDataError(f"{name} is {value!r}, not an integer") from None


def build_user_data(private_id: str, profiles: list[ServiceProfile]) -> str:
    """Serialize an IMSSubscription (the inverse of parse_user_data). Written as text, not
    through an lxml tree: the HSS emulator builds one for every new subscriber, and the tree
    cost four times as much. Text is escaped as lxml escapes it; a character XML cannot carry
    raises ValueError, as lxml does."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?><IMSSubscription><PrivateID>',
             _xml_text(private_id), "</PrivateID>"]
    for profile in profiles:
        parts.append("<ServiceProfile>")
        parts += [_identity_xml(pi) for pi in profile.public_identities]
        if profile.cn_services_authorization is not None:
            media = profile.cn_services_authorization.get("subscribed_media_profile_id")
            parts.append("<CoreNetworkServicesAuthorization/>" if media is None else
                         "<CoreNetworkServicesAuthorization><SubscribedMediaProfileId>"
                         f"{media}</SubscribedMediaProfileId>"
                         "</CoreNetworkServicesAuthorization>")
        parts += [_ifc_text(ifc) for ifc in profile.ifc_xml]
        parts.append("</ServiceProfile>")
    parts.append("</IMSSubscription>")
    return "".join(parts)


def _identity_xml(pi: PublicIdentity) -> str:
    head = (f"<PublicIdentity><BarringIndication>{'1' if pi.barred else '0'}</BarringIndication>"
            f"<Identity>{_xml_text(pi.identity)}</Identity>")
    if pi.identity_type == IDENTITY_TYPE_PUBLIC_USER and not pi.wildcarded_psi \
            and not pi.display_name:
        return head + "</PublicIdentity>"
    extension = f"<Extension><IdentityType>{pi.identity_type}</IdentityType>"
    if pi.wildcarded_psi:
        extension += f"<WildcardedPSI>{_xml_text(pi.wildcarded_psi)}</WildcardedPSI>"
    if pi.display_name:
        extension += (f"<Extension><DisplayName>{_xml_text(pi.display_name)}</DisplayName>"
                      "</Extension>")
    return head + extension + "</Extension></PublicIdentity>"


# What XML 1.0 cannot carry: control characters other than tab, LF and CR, lone surrogates,
# U+FFFE and U+FFFF.
_NOT_XML = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CR = {"\r": "&#13;"}


def _xml_text(text: str) -> str:
    if _NOT_XML.search(text):
        raise ValueError(f"{text!r} has a character XML cannot carry")
    return escape(text, _CR)  # and "\r" as a reference, which a parser keeps (lxml does so)


@lru_cache(maxsize=256)  # the emulator's iFCs are a few configured strings
def _ifc_text(ifc: str) -> str:
    """An InitialFilterCriteria element checked and in lxml's serialization."""
    return etree.tostring(_parse_xml(ifc), encoding="unicode")
