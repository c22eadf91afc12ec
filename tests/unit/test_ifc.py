"""iFC evaluation for REGISTER (actors/rules/ifc.py) and the iFC model of the Cx user data."""
from __future__ import annotations

import pytest

from actors.rules.ifc import RegisterFacts, RegistrationType, ifc_matches, matching_servers
from actors.rules.save import profile_from_user_data
from transport.diameter.user_data import (
    SESSION_TERMINATED,
    PublicIdentity,
    ServiceProfile,
    UserDataError,
    build_user_data,
    parse_ifc,
    parse_user_data,
)

INITIAL = RegisterFacts(RegistrationType.INITIAL, "sip:ims.test",
                        (("From", "<sip:alice@ims.test>;tag=1"), ("User-Agent", "phone/1.0"),
                         ("P-Visited-Network-ID", '"visited.net"')))
REFRESH = RegisterFacts(RegistrationType.RE_REGISTRATION, "sip:ims.test")
NETWORK_DEREGISTRATION = RegisterFacts(RegistrationType.DE_REGISTRATION)


def spt(kind: str, *, negated: bool = False, groups=(0,)) -> str:
    return (f"<SPT><ConditionNegated>{int(negated)}</ConditionNegated>"
            + "".join(f"<Group>{g}</Group>" for g in groups) + f"{kind}</SPT>")


REGISTER = "<Method>REGISTER</Method>"
INVITE = "<Method>INVITE</Method>"
ORIGINATING = "<SessionCase>0</SessionCase>"
TERMINATING = "<SessionCase>1</SessionCase>"


def ifc(*spts: str, cnf: bool = True, priority: int = 0, server: str = "sip:as.ims.test",
        extra: str = "", part: str = "") -> str:
    trigger = (f"<TriggerPoint><ConditionTypeCNF>{int(cnf)}</ConditionTypeCNF>"
               + "".join(spts) + "</TriggerPoint>")
    return (f"<InitialFilterCriteria><Priority>{priority}</Priority>{trigger}"
            f"<ApplicationServer><ServerName>{server}</ServerName>{extra}</ApplicationServer>"
            f"{part}</InitialFilterCriteria>")


def matches(xml: str, facts: RegisterFacts = INITIAL) -> bool:
    return ifc_matches(parse_ifc(xml), facts)


def test_method_spt_matches_register_only():
    assert matches(ifc(spt(REGISTER)))
    assert not matches(ifc(spt(INVITE)))


def test_a_register_is_an_originating_request():
    assert matches(ifc(spt(REGISTER), spt(ORIGINATING, groups=(1,))))
    assert not matches(ifc(spt(REGISTER), spt(TERMINATING, groups=(1,))))
    for case in (2, 3):
        assert not matches(ifc(spt(f"<SessionCase>{case}</SessionCase>")))


def test_registration_type_narrows_the_method_spt():
    only_initial_and_dereg = spt(
        "<Method>REGISTER</Method><Extension><RegistrationType>0</RegistrationType>"
        "<RegistrationType>2</RegistrationType></Extension>")
    assert matches(ifc(only_initial_and_dereg), INITIAL)
    assert not matches(ifc(only_initial_and_dereg), REFRESH)
    assert matches(ifc(only_initial_and_dereg), NETWORK_DEREGISTRATION)


def test_sip_header_spt_searches_the_content_of_every_value():
    agent = "<SIPHeader><Header>user-agent</Header><Content>^phone/1</Content></SIPHeader>"
    other = "<SIPHeader><Header>User-Agent</Header><Content>tablet</Content></SIPHeader>"
    present = "<SIPHeader><Header>P-Visited-Network-ID</Header></SIPHeader>"
    assert matches(ifc(spt(agent)))
    assert not matches(ifc(spt(other)))
    assert matches(ifc(spt(present)))
    assert not matches(ifc(spt(present)), REFRESH)  # no such header in that REGISTER
    assert not matches(ifc(spt(agent)), NETWORK_DEREGISTRATION)  # no REGISTER at all


def test_request_uri_spt():
    assert matches(ifc(spt("<RequestURI>ims\\.test$</RequestURI>")))
    assert not matches(ifc(spt("<RequestURI>other\\.net</RequestURI>")))
    assert not matches(ifc(spt("<RequestURI>.*</RequestURI>")), NETWORK_DEREGISTRATION)


def test_condition_negated_inverts_an_spt():
    assert not matches(ifc(spt(REGISTER, negated=True)))
    assert matches(ifc(spt(INVITE, negated=True)))
    assert matches(ifc(spt(REGISTER), spt(TERMINATING, negated=True, groups=(1,))))


def test_cnf_ands_groups_that_or_their_spts():
    # (REGISTER or INVITE) and (TERMINATING): false; (REGISTER or INVITE) and ORIGINATING: true
    assert not matches(ifc(spt(REGISTER), spt(INVITE), spt(TERMINATING, groups=(1,))))
    assert matches(ifc(spt(INVITE), spt(REGISTER), spt(ORIGINATING, groups=(1,))))
    assert not matches(ifc(spt(INVITE), spt(TERMINATING, groups=(1,))))


def test_dnf_ors_groups_that_and_their_spts():
    # (REGISTER and TERMINATING) or (INVITE): false; (REGISTER and ORIGINATING) or INVITE: true
    assert not matches(ifc(spt(REGISTER), spt(TERMINATING), spt(INVITE, groups=(1,)), cnf=False))
    assert matches(ifc(spt(REGISTER), spt(ORIGINATING), spt(INVITE, groups=(1,)), cnf=False))
    assert matches(ifc(spt(INVITE), spt(REGISTER, groups=(1,)), cnf=False))


def test_an_spt_in_two_groups_counts_in_both():
    # CNF: (REGISTER) and (REGISTER or TERMINATING) with REGISTER in groups 0 and 1
    assert matches(ifc(spt(REGISTER, groups=(0, 1)), spt(TERMINATING, groups=(1,))))
    # DNF: (INVITE and REGISTER) or (REGISTER): true only through group 1
    assert matches(ifc(spt(INVITE), spt(REGISTER, groups=(0, 1)), cnf=False))
    assert not matches(ifc(spt(INVITE), spt(REGISTER, groups=(0, 1)), spt(TERMINATING, groups=(1,)),
                           cnf=False))


def test_no_trigger_point_matches_everything_and_unregistered_part_nothing():
    bare = ("<InitialFilterCriteria><Priority>1</Priority><ApplicationServer><ServerName>"
            "sip:as.ims.test</ServerName></ApplicationServer></InitialFilterCriteria>")
    assert matches(bare, NETWORK_DEREGISTRATION)
    assert not matches(ifc(spt(REGISTER), part="<ProfilePartIndicator>1</ProfilePartIndicator>"))
    assert matches(ifc(spt(REGISTER), part="<ProfilePartIndicator>0</ProfilePartIndicator>"))


def user_data(*ifcs: str, identity: str = "sip:alice@ims.test") -> str:
    return build_user_data("alice@ims.test", [ServiceProfile([PublicIdentity(identity)],
                                                             ifc_xml=list(ifcs))])


def test_servers_come_in_priority_order_and_only_those_matching():
    data = user_data(ifc(spt(REGISTER), priority=20, server="sip:low@127.0.0.1:5071"),
                     ifc(spt(INVITE), priority=1, server="sip:invite@127.0.0.1:5072"),
                     ifc(spt(REGISTER), priority=5, server="sip:high@127.0.0.1:5073"))
    servers = matching_servers(data, "sip:alice@ims.test", INITIAL)
    assert [s.server_name for s in servers] == ["sip:high@127.0.0.1:5073",
                                               "sip:low@127.0.0.1:5071"]


def test_application_server_fields_are_read():
    extra = ("<DefaultHandling>1</DefaultHandling><ServiceInfo>mmtel &amp; more</ServiceInfo>"
             "<Extension><IncludeRegisterRequest/><IncludeRegisterResponse/></Extension>")
    server = parse_ifc(ifc(spt(REGISTER), extra=extra)).application_server
    assert (server.default_handling, server.service_info, server.include_register_request,
            server.include_register_response) == (SESSION_TERMINATED, "mmtel & more", True, True)
    plain = parse_ifc(ifc(spt(REGISTER))).application_server
    assert (plain.default_handling, plain.service_info, plain.include_register_request) == (
        0, None, False)


@pytest.mark.parametrize("bad, message", [
    (ifc(spt("<RequestURI>([</RequestURI>")), "bad regular expression"),
    (ifc(spt("<Group>0</Group>")), "SPT has no"),
    (ifc(spt(REGISTER), extra="<DefaultHandling>7</DefaultHandling>"), "DefaultHandling"),
    (ifc(spt(REGISTER), server=""), "ServerName"),
    (ifc(spt(REGISTER)).replace("<ConditionTypeCNF>1", "<ConditionTypeCNF>maybe"),
     "ConditionTypeCNF"),
])
def test_unusable_ifcs_make_the_user_data_unusable(bad, message):
    with pytest.raises(UserDataError, match=message):
        profile_from_user_data(user_data(bad))
    assert parse_user_data(user_data(bad)).private_id  # its other uses still read it


def test_the_profile_of_the_identity_is_found_as_the_registrar_keys_it():
    data = build_user_data("alice@ims.test", [
        ServiceProfile([PublicIdentity("sip:Alice@IMS.Test;user=phone")],
                       ifc_xml=[ifc(spt(REGISTER), server="sip:first@127.0.0.1:5071")]),
        ServiceProfile([PublicIdentity("tel:+15550001")],
                       ifc_xml=[ifc(spt(REGISTER), server="sip:second@127.0.0.1:5072")])])
    assert [s.server_name for s in matching_servers(data, "sip:Alice@ims.test", INITIAL)] == [
        "sip:first@127.0.0.1:5071"]
    assert [s.server_name for s in matching_servers(data, "tel:+15550001", INITIAL)] == [
        "sip:second@127.0.0.1:5072"]
    assert matching_servers(data, "sip:nobody@ims.test", INITIAL) == []
