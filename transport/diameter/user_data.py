"""The IMS user profile carried in Cx User-Data (TS 29.228 annex B model, annex E schema).

Pure: parses and builds the XML, nothing else. The parser never resolves entities, loads DTDs or
touches the network, and refuses any DOCTYPE, since Cx user data has no use for one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

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


@dataclass
class ServiceProfile:
    public_identities: list[PublicIdentity]
    ifc_xml: list[str] = field(default_factory=list)  # each InitialFilterCriteria, serialized
    cn_services_authorization: dict | None = None  # {"subscribed_media_profile_id": int|None}

    def application_servers(self) -> list[str]:
        """The ServerName of each initial filter criterion, in priority order as listed."""
        return [name.strip() for ifc in self.ifc_xml for name in
                etree.fromstring(ifc, _PARSER).xpath("ApplicationServer/ServerName/text()")]


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
    profiles = [_parse_profile(sp) for sp in root.iterfind("ServiceProfile")]
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
    found = element.findtext(path)
    return found.strip() if found is not None else None


def _parse_profile(profile: etree._Element) -> ServiceProfile:
    identities = [_parse_identity(pi) for pi in profile.iterfind("PublicIdentity")]
    if not identities:
        raise UserDataError("ServiceProfile has no PublicIdentity")
    cn_auth = profile.find("CoreNetworkServicesAuthorization")
    media_profile = cn_auth.findtext("SubscribedMediaProfileId") if cn_auth is not None else None
    return ServiceProfile(
        public_identities=identities,
        ifc_xml=[etree.tostring(ifc, encoding="unicode").strip()
                 for ifc in profile.iterfind("InitialFilterCriteria")],
        cn_services_authorization=None if cn_auth is None else {
            "subscribed_media_profile_id": _int(media_profile, "SubscribedMediaProfileId")})


def _parse_identity(element: etree._Element) -> PublicIdentity:
    identity = _text(element, "Identity")
    if not identity:
        raise UserDataError("PublicIdentity has no Identity")
    barring = _text(element, "BarringIndication")
    if barring not in (None, "0", "1", "true", "false"):
        raise UserDataError(f"BarringIndication of {identity} is {barring!r}, not a boolean")
    return PublicIdentity(
        identity=identity,
        barred=barring in ("1", "true"),
        identity_type=_int(_text(element, "Extension/IdentityType"), "IdentityType") or 0,
        wildcarded_psi=_text(element, "Extension/WildcardedPSI"),
        display_name=_text(element, "Extension/Extension/DisplayName"))


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserDataError(f"{name} is {value!r}, not an integer") from None


def build_user_data(private_id: str, profiles: list[ServiceProfile]) -> str:
    """Serialize an IMSSubscription (the inverse of parse_user_data)."""
    root = etree.Element("IMSSubscription")
    etree.SubElement(root, "PrivateID").text = private_id
    for profile in profiles:
        sp = etree.SubElement(root, "ServiceProfile")
        for pi in profile.public_identities:
            _build_identity(etree.SubElement(sp, "PublicIdentity"), pi)
        if profile.cn_services_authorization is not None:
            cn_auth = etree.SubElement(sp, "CoreNetworkServicesAuthorization")
            media = profile.cn_services_authorization.get("subscribed_media_profile_id")
            if media is not None:
                etree.SubElement(cn_auth, "SubscribedMediaProfileId").text = str(media)
        for ifc in profile.ifc_xml:
            sp.append(_parse_xml(ifc))
    return '<?xml version="1.0" encoding="UTF-8"?>' + etree.tostring(root, encoding="unicode")


def initial_filter_criterion(priority: int, server_name: str) -> str:
    """An iFC that sends everything (no trigger point) to ``server_name``, session continued
    when it does not answer (DefaultHandling 0)."""
    ifc = etree.Element("InitialFilterCriteria")
    etree.SubElement(ifc, "Priority").text = str(priority)
    server = etree.SubElement(ifc, "ApplicationServer")
    etree.SubElement(server, "ServerName").text = server_name
    etree.SubElement(server, "DefaultHandling").text = "0"
    return etree.tostring(ifc, encoding="unicode")


def _build_identity(element: etree._Element, pi: PublicIdentity):
    etree.SubElement(element, "BarringIndication").text = "1" if pi.barred else "0"
    etree.SubElement(element, "Identity").text = pi.identity
    if pi.identity_type == IDENTITY_TYPE_PUBLIC_USER and not pi.wildcarded_psi \
            and not pi.display_name:
        return
    extension = etree.SubElement(element, "Extension")
    etree.SubElement(extension, "IdentityType").text = str(pi.identity_type)
    if pi.wildcarded_psi:
        etree.SubElement(extension, "WildcardedPSI").text = pi.wildcarded_psi
    if pi.display_name:
        etree.SubElement(etree.SubElement(extension, "Extension"), "DisplayName").text = \
            pi.display_name
