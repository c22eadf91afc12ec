"""Cx user data (IMSSubscription XML): parsing, safety, schema validation, building."""
from pathlib import Path

import pytest

from transport.diameter.user_data import (
    IDENTITY_TYPE_DISTINCT_PSI,
    IDENTITY_TYPE_WILDCARDED_PSI,
    ImsSubscription,
    PublicIdentity,
    ServiceProfile,
    UserDataError,
    build_user_data,
    parse_user_data,
)

XSD = str(Path(__file__).resolve().parents[1] / "data" / "CxDataType.xsd")

IFC = ("<InitialFilterCriteria><Priority>0</Priority><TriggerPoint><ConditionTypeCNF>1"
       "</ConditionTypeCNF><SPT><ConditionNegated>0</ConditionNegated><Group>0</Group>"
       "<Method>INVITE</Method></SPT></TriggerPoint><ApplicationServer>"
       "<ServerName>sip:as.ims.test</ServerName><DefaultHandling>0</DefaultHandling>"
       "</ApplicationServer></InitialFilterCriteria>")

TWO_PROFILES = f"""<?xml version="1.0" encoding="UTF-8"?>
<IMSSubscription>
  <PrivateID>alice@ims.test</PrivateID>
  <ServiceProfile>
    <PublicIdentity>
      <BarringIndication>0</BarringIndication>
      <Identity>sip:alice@ims.test</Identity>
      <Extension><IdentityType>0</IdentityType>
        <Extension><DisplayName>Alice</DisplayName></Extension></Extension>
    </PublicIdentity>
    <PublicIdentity>
      <BarringIndication>1</BarringIndication>
      <Identity>sip:alice-barred@ims.test</Identity>
    </PublicIdentity>
    <CoreNetworkServicesAuthorization>
      <SubscribedMediaProfileId>3</SubscribedMediaProfileId>
    </CoreNetworkServicesAuthorization>
    {IFC}
  </ServiceProfile>
  <ServiceProfile>
    <PublicIdentity>
      <Identity>tel:+15550001</Identity>
    </PublicIdentity>
    <PublicIdentity>
      <Identity>sip:alice-chat!.*!@ims.test</Identity>
      <Extension><IdentityType>2</IdentityType>
        <WildcardedPSI>sip:alice-chat!.*!@ims.test</WildcardedPSI></Extension>
    </PublicIdentity>
  </ServiceProfile>
</IMSSubscription>"""


@pytest.mark.parametrize("xsd", [None, XSD])
def test_two_profiles(xsd):
    sub = parse_user_data(TWO_PROFILES, xsd)
    assert sub.private_id == "alice@ims.test"
    assert sub.all_identities() == ["sip:alice@ims.test", "sip:alice-barred@ims.test",
                                    "tel:+15550001", "sip:alice-chat!.*!@ims.test"]
    assert sub.unbarred_identities() == ["sip:alice@ims.test", "tel:+15550001",
                                         "sip:alice-chat!.*!@ims.test"]
    first, second = sub.service_profiles
    assert first.public_identities[0] == PublicIdentity("sip:alice@ims.test",
                                                        display_name="Alice")
    assert first.public_identities[1].barred
    assert first.cn_services_authorization == {"subscribed_media_profile_id": 3}
    assert second.cn_services_authorization is None and second.ifc_xml == []
    assert first.ifc_xml == [IFC]
    wildcard = second.public_identities[1]
    assert wildcard.identity_type == IDENTITY_TYPE_WILDCARDED_PSI
    assert wildcard.wildcarded_psi == "sip:alice-chat!.*!@ims.test"


def test_profile_of():
    sub = parse_user_data(TWO_PROFILES.encode())
    first, second = sub.service_profiles
    assert sub.profile_of("sip:alice-barred@ims.test") is first
    assert sub.profile_of("tel:+15550001") is second
    assert sub.profile_of("sip:alice-chat-room7@ims.test") is second
    assert sub.profile_of("sip:alice-chat@elsewhere.test") is None


def test_build_round_trip_validates():
    profiles = [ServiceProfile([PublicIdentity("sip:bob@ims.test", display_name="Bob <&>"),
                                PublicIdentity("tel:+15550002", barred=True)],
                               ifc_xml=[IFC], cn_services_authorization={
                                   "subscribed_media_profile_id": 0}),
                ServiceProfile([PublicIdentity("sip:conf@ims.test",
                                               identity_type=IDENTITY_TYPE_DISTINCT_PSI)])]
    xml = build_user_data("bob@ims.test", profiles)
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><IMSSubscription>')
    assert parse_user_data(xml, XSD) == ImsSubscription("bob@ims.test", profiles)


def test_built_text_keeps_every_character_xml_can_carry_and_refuses_the_others():
    odd = "sip:a&b<c>\r\"d\"@ims.test;x=é😀"
    xml = build_user_data("u\r@ims.test", [ServiceProfile([PublicIdentity(odd)])])
    assert "&amp;b&lt;c&gt;&#13;" in xml
    subscription = parse_user_data(xml, XSD)
    assert subscription.private_id == "u\r@ims.test"
    assert subscription.all_identities() == [odd]
    for bad in ("\x00", "\x1b", "\ud800", "\uffff"):
        with pytest.raises(ValueError, match="character XML cannot carry"):
            build_user_data("u@ims.test", [ServiceProfile([PublicIdentity(f"sip:{bad}@x")])])


def test_minimal_profile_from_the_wire():
    xml = ('<?xml version="1.0" encoding="UTF-8"?><IMSSubscription><PrivateID>u@ims.test'
           '</PrivateID><ServiceProfile><PublicIdentity><BarringIndication>0'
           '</BarringIndication><Identity>sip:u@ims.test</Identity></PublicIdentity>'
           '</ServiceProfile></IMSSubscription>')
    assert parse_user_data(xml, XSD).all_identities() == ["sip:u@ims.test"]


@pytest.mark.parametrize("xml, message", [
    ("<IMSSubscription><PrivateID>a@x</PrivateID>", "not well-formed"),
    ("", "not well-formed"),
    ("<Other/>", "expected <IMSSubscription>"),
    ("<IMSSubscription><ServiceProfile/></IMSSubscription>", "no PrivateID"),
    ("<IMSSubscription><PrivateID>a@x</PrivateID></IMSSubscription>", "no ServiceProfile"),
    ("<IMSSubscription><PrivateID>a@x</PrivateID><ServiceProfile/></IMSSubscription>",
     "no PublicIdentity"),
    ("<IMSSubscription><PrivateID>a@x</PrivateID><ServiceProfile><PublicIdentity>"
     "<BarringIndication>0</BarringIndication></PublicIdentity></ServiceProfile>"
     "</IMSSubscription>", "no Identity"),
    ("<IMSSubscription><PrivateID>a@x</PrivateID><ServiceProfile><PublicIdentity>"
     "<BarringIndication>maybe</BarringIndication><Identity>sip:a@x</Identity>"
     "</PublicIdentity></ServiceProfile></IMSSubscription>", "not a boolean"),
])
def test_invalid_documents(xml, message):
    with pytest.raises(UserDataError, match=message):
        parse_user_data(xml)


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE IMSSubscription [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE IMSSubscription [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>',
    '<!DOCTYPE IMSSubscription SYSTEM "http://127.0.0.1:9/cx.dtd">',
])
def test_doctype_and_entities_are_refused(doctype):
    xml = (f'<?xml version="1.0"?>{doctype}<IMSSubscription><PrivateID>&xxe;&b;</PrivateID>'
           "<ServiceProfile><PublicIdentity><Identity>sip:a@x</Identity></PublicIdentity>"
           "</ServiceProfile></IMSSubscription>")
    with pytest.raises(UserDataError, match="DOCTYPE|not well-formed") as err:
        parse_user_data(xml)
    assert "root:" not in str(err.value)  # nothing from /etc/passwd leaked into the message


def test_schema_violation_fails_only_with_validation():
    # <Colour> is not allowed in a ServiceProfile; without the schema it is simply ignored.
    xml = TWO_PROFILES.replace("<CoreNetworkServicesAuthorization>",
                               "<Colour>red</Colour><CoreNetworkServicesAuthorization>")
    assert len(parse_user_data(xml).service_profiles) == 2
    with pytest.raises(UserDataError, match="does not match the schema"):
        parse_user_data(xml, XSD)
    out_of_range = TWO_PROFILES.replace("<IdentityType>2</IdentityType>",
                                        "<IdentityType>9</IdentityType>")
    assert parse_user_data(out_of_range).service_profiles[1].public_identities[1] \
        .identity_type == 9
    with pytest.raises(UserDataError, match="IdentityType"):
        parse_user_data(out_of_range, XSD)


def test_missing_schema_file():
    with pytest.raises(UserDataError, match="cannot load schema"):
        parse_user_data(TWO_PROFILES, "/nonexistent/CxDataType.xsd")


def test_bad_wildcard_is_a_user_data_error():
    sub = ImsSubscription("a@x", [ServiceProfile([PublicIdentity(
        "sip:p!(!@x", identity_type=IDENTITY_TYPE_WILDCARDED_PSI, wildcarded_psi="sip:p!(!@x")])])
    with pytest.raises(UserDataError, match="regular expression"):
        sub.profile_of("sip:p1@x")


def as_ifc(priority: int, server_name: str) -> str:
    return (f"<InitialFilterCriteria><Priority>{priority}</Priority><ApplicationServer>"
            f"<ServerName>{server_name}</ServerName><DefaultHandling>0</DefaultHandling>"
            "</ApplicationServer></InitialFilterCriteria>")


def test_ifcs_name_their_application_servers_and_validate():
    ifcs = [as_ifc(1, "sip:tas.ims.test"), as_ifc(0, "sip:as.ims.test:5065")]
    xml = build_user_data("u@ims.test", [ServiceProfile([PublicIdentity("sip:u@ims.test")], ifcs)])
    (profile,) = parse_user_data(xml, XSD).service_profiles
    assert profile.application_servers() == ["sip:as.ims.test:5065", "sip:tas.ims.test"]
