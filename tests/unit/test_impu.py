"""REGISTER rules on one identity, without Ray or sockets."""
from actors.rules.expires import ExpiresPolicy
from actors.rules.impu import Impu, RegisterRules, ok_headers, plan_register
from actors.rules.save import profile_from_user_data
from actors.store.records import decode_impu, encode_impu
from actors.vocabulary import ContactRequest, Profile, RegisterRequest, RegState, Reply
from transport.diameter.cx import ServerAssignmentType as SAT

RULES = RegisterRules(expires=ExpiresPolicy(3600, 0, 60, 7200))
NOW = 1000.0


def contact(uri, expires=None, q=None, instance=None, reg_id=None):
    key = f"instance:{instance}|{reg_id or ''}" if instance else f"uri:{uri}"
    params = []
    if q:
        params.append(("q", q))
    if instance:
        params.append(("+sip.instance", instance))
    if reg_id is not None:
        params.append(("reg-id", str(reg_id)))
    return ContactRequest(uri, key, expires, q, instance, reg_id, tuple(params))


def register(*contacts, call_id="c1", cseq=1, expires=None, star=False, path=(), supported=False):
    return RegisterRequest(
        aor="sip:alice@ims.test", impi="alice@ims.test", call_id=call_id, cseq=cseq,
        contacts=list(contacts), star=star, expires=expires, path=tuple(path),
        path_supported=supported, transaction=(call_id, cseq, "z9hG4bK1"),
    )


def registered(impu, plan):
    impu.apply(RegState.REGISTERED, plan.bindings, Profile("alice@ims.test", ("sip:alice@ims.test",), frozenset(), None))


def test_initial_registration_needs_sar_registration_with_user_data():
    plan = plan_register(Impu("sip:alice@ims.test"), register(contact("sip:a@1.2.3.4", 600)), NOW, RULES)
    assert plan.assignment == SAT.REGISTRATION
    assert plan.user_data_already_available is False
    (binding,) = plan.bindings.values()
    assert binding.expires_at == NOW + 600


def test_refresh_is_re_registration_with_data_already_available():
    impu = Impu("sip:alice@ims.test")
    registered(impu, plan_register(impu, register(contact("sip:a@1.2.3.4", 600)), NOW, RULES))
    plan = plan_register(impu, register(contact("sip:a@1.2.3.4", 600), cseq=2), NOW + 10, RULES)
    assert plan.assignment == SAT.RE_REGISTRATION
    assert plan.user_data_already_available is True
    always = RegisterRules(expires=RULES.expires, user_data_always=True)
    assert plan_register(impu, register(contact("sip:a@1.2.3.4"), cseq=3), NOW, always).user_data_already_available is False


def test_expires_param_beats_header_beats_default_and_is_clamped():
    impu = Impu("sip:alice@ims.test")
    plan = plan_register(impu, register(contact("sip:a@h", 100), contact("sip:b@h"), expires=300), NOW, RULES)
    assert {b.uri: b.expires_at - NOW for b in plan.bindings.values()} == {"sip:a@h": 100, "sip:b@h": 300}
    plan = plan_register(impu, register(contact("sip:a@h")), NOW, RULES)
    assert [b.expires_at - NOW for b in plan.bindings.values()] == [3600]
    plan = plan_register(impu, register(contact("sip:a@h", 3), contact("sip:b@h", 99999)), NOW, RULES)
    assert sorted(b.expires_at - NOW for b in plan.bindings.values()) == [60, 7200]


def test_removing_the_last_contact_is_user_deregistration():
    impu = Impu("sip:alice@ims.test")
    registered(impu, plan_register(impu, register(contact("sip:a@h", 600)), NOW, RULES))
    plan = plan_register(impu, register(contact("sip:a@h", 0), cseq=2), NOW, RULES)
    assert plan.bindings == {} and plan.assignment == SAT.USER_DEREGISTRATION
    store = RegisterRules(expires=RULES.expires, store_profile_dereg=True)
    assert plan_register(impu, register(contact("sip:a@h", 0), cseq=2), NOW, store).assignment == SAT.USER_DEREGISTRATION_STORE_SERVER_NAME


def test_removing_one_of_two_contacts_keeps_the_other():
    impu = Impu("sip:alice@ims.test")
    registered(impu, plan_register(impu, register(contact("sip:a@h", 600), contact("sip:b@h", 600)), NOW, RULES))
    plan = plan_register(impu, register(contact("sip:a@h", 0), cseq=2), NOW, RULES)
    assert [b.uri for b in plan.bindings.values()] == ["sip:b@h"]
    assert [b.uri for b in plan.removed.values()] == ["sip:a@h"]
    assert plan.assignment is None  # as Kamailio: no SAR when some of the contacts go


def test_a_register_refreshing_one_contact_and_removing_another_is_a_re_registration():
    impu = Impu("sip:alice@ims.test")
    registered(impu, plan_register(impu, register(contact("sip:a@h", 600), contact("sip:b@h", 600)), NOW, RULES))
    plan = plan_register(impu, register(contact("sip:a@h", 0), contact("sip:b@h", 600), cseq=2), NOW, RULES)
    assert plan.assignment == SAT.RE_REGISTRATION and list(plan.removed) == ["uri:sip:a@h"]


def test_deregistering_an_identity_with_no_binding_still_tells_the_hss():
    for req in (register(contact("sip:a@h", 0)), register(star=True, expires=0)):
        plan = plan_register(Impu("sip:alice@ims.test"), req, NOW, RULES)
        assert (plan.bindings, plan.removed, plan.assignment) == ({}, {}, SAT.USER_DEREGISTRATION)
    query = plan_register(Impu("sip:alice@ims.test"), register(), NOW, RULES)  # no Contact
    assert query.assignment is None


def test_star_requires_expires_zero_and_removes_everything():
    impu = Impu("sip:alice@ims.test")
    registered(impu, plan_register(impu, register(contact("sip:a@h", 600), contact("sip:b@h", 600)), NOW, RULES))
    bad = plan_register(impu, register(star=True, expires=60, cseq=2), NOW, RULES)
    assert bad == Reply(400, "Contact * requires Expires: 0")
    plan = plan_register(impu, register(star=True, expires=0, cseq=2), NOW, RULES)
    assert plan.bindings == {} and plan.assignment == SAT.USER_DEREGISTRATION


def test_same_call_id_with_old_cseq_is_rejected():
    impu = Impu("sip:alice@ims.test")
    registered(impu, plan_register(impu, register(contact("sip:a@h", 600), cseq=5), NOW, RULES))
    assert plan_register(impu, register(contact("sip:a@h", 600), cseq=5), NOW, RULES) == Reply(400, "Invalid CSeq number")
    assert plan_register(impu, register(star=True, expires=0, cseq=4), NOW, RULES) == Reply(400, "Invalid CSeq number")
    # another Call-ID (a rebooted UA) may update whatever its CSeq
    assert plan_register(impu, register(contact("sip:a@h", 600), call_id="c2", cseq=1), NOW, RULES).bindings


def test_same_instance_and_reg_id_replaces_the_old_flow():
    impu = Impu("sip:alice@ims.test")
    inst = '"<urn:gsma:imei:35-209900-176148-1>"'
    registered(impu, plan_register(impu, register(contact("sip:a@10.0.0.1:5060", 600, instance=inst, reg_id=1)), NOW, RULES))
    plan = plan_register(impu, register(contact("sip:a@10.0.0.9:5061", 600, instance=inst, reg_id=1), call_id="c2"), NOW, RULES)
    assert [b.uri for b in plan.bindings.values()] == ["sip:a@10.0.0.9:5061"]


def test_expired_bindings_are_not_counted():
    impu = Impu("sip:alice@ims.test")
    registered(impu, plan_register(impu, register(contact("sip:a@h", 60)), NOW, RULES))
    plan = plan_register(impu, register(contact("sip:b@h", 600), call_id="c2"), NOW + 61, RULES)
    assert [b.uri for b in plan.bindings.values()] == ["sip:b@h"]
    assert plan.assignment == SAT.REGISTRATION


def test_max_contacts_reject_or_replace_oldest():
    impu = Impu("sip:alice@ims.test")
    reject = RegisterRules(expires=RULES.expires, max_contacts=2)
    registered(impu, plan_register(impu, register(contact("sip:a@h", 600), contact("sip:b@h", 600)), NOW, reject))
    assert plan_register(impu, register(contact("sip:c@h", 600), cseq=2), NOW + 1, reject) == Reply(403, "Too many registered contacts")
    replace = RegisterRules(expires=RULES.expires, max_contacts=2, replace_oldest=True)
    impu.bindings["uri:sip:b@h"].registered_at = NOW - 5  # b is the oldest
    plan = plan_register(impu, register(contact("sip:c@h", 600), cseq=2), NOW + 1, replace)
    assert sorted(b.uri for b in plan.bindings.values()) == ["sip:a@h", "sip:c@h"]


def test_path_without_supported_is_420_only_in_strict_mode():
    req = register(contact("sip:a@h", 600), path=["<sip:pcscf.ims.test;lr>"])
    strict = RegisterRules(expires=RULES.expires, path_strict=True)
    assert plan_register(Impu("sip:alice@ims.test"), req, NOW, strict) == Reply(420, "Bad Extension", [("Unsupported", "path")])
    assert plan_register(Impu("sip:alice@ims.test"), req, NOW, RULES).bindings


def test_ok_headers_list_bindings_by_q_with_remaining_expiry_path_and_associated_uris():
    impu = Impu("sip:alice@ims.test")
    req = register(contact("sip:a@h", 600, q="0.5"), contact("sip:b@h", 300, q="0.9"), path=["<sip:pcscf.ims.test;lr>"])
    plan = plan_register(impu, req, NOW, RULES)
    profile = Profile("alice@ims.test", ("sip:alice@ims.test", "tel:+15550001", "sip:barred@ims.test"),
                      frozenset({"sip:barred@ims.test"}), None)
    headers = ok_headers(plan.bindings, req, profile, NOW + 100, "<sip:orig@scscf.ims.test:5060;lr>")
    assert headers == [
        ("Contact", "<sip:b@h>;q=0.9;expires=200"),
        ("Contact", "<sip:a@h>;q=0.5;expires=500"),
        ("Path", "<sip:pcscf.ims.test;lr>"),
        ("Service-Route", "<sip:orig@scscf.ims.test:5060;lr>"),
        ("P-Associated-URI", "<sip:alice@ims.test>, <tel:+15550001>"),
    ]


def test_removed_contacts_are_echoed_with_expires_zero_after_the_ones_that_stay():
    impu = Impu("sip:alice@ims.test")
    both = register(contact("sip:a@h", 600, instance='"<urn:uuid:1>"', reg_id=1), contact("sip:b@h", 600))
    registered(impu, plan_register(impu, both, NOW, RULES))
    req = register(contact("sip:a@h", 0, instance='"<urn:uuid:1>"', reg_id=1), cseq=2)
    plan = plan_register(impu, req, NOW + 100, RULES)
    headers = ok_headers(plan.bindings, req, None, NOW + 100, "<sip:orig@s;lr>", plan.removed)
    assert headers == [("Contact", "<sip:b@h>;expires=500"),
                       ("Contact", '<sip:a@h>;+sip.instance="<urn:uuid:1>";reg-id=1;expires=0'),
                       ("Service-Route", "<sip:orig@s;lr>")]
    star = register(star=True, expires=0, cseq=3)
    plan = plan_register(impu, star, NOW + 100, RULES)
    assert ok_headers(plan.bindings, star, None, NOW + 100, "<sip:orig@s;lr>", plan.removed) == [
        ("Contact", '<sip:a@h>;+sip.instance="<urn:uuid:1>";reg-id=1;expires=0'),
        ("Contact", "<sip:b@h>;expires=0")]


def test_p_associated_uri_is_written_as_the_hss_gave_it():
    user_data = """<IMSSubscription><PrivateID>alice@ims.test</PrivateID><ServiceProfile>
     <PublicIdentity><Identity>sip:Alice@IMS.test:5060;user=phone</Identity>
      <Extension><IdentityType>0</IdentityType><Extension><DisplayName>Alice "A" Smith</DisplayName></Extension></Extension>
     </PublicIdentity>
     <PublicIdentity><Identity>tel:+15550001</Identity></PublicIdentity>
     <PublicIdentity><BarringIndication>1</BarringIndication><Identity>sip:hidden@ims.test</Identity></PublicIdentity>
    </ServiceProfile></IMSSubscription>"""
    profile = profile_from_user_data(user_data)
    req = register(contact("sip:a@h", 600))
    plan = plan_register(Impu("sip:Alice@ims.test"), req, NOW, RULES)
    headers = dict(ok_headers(plan.bindings, req, profile, NOW, "<sip:orig@s;lr>"))
    assert headers["P-Associated-URI"] == (
        '"Alice \\"A\\" Smith" <sip:Alice@IMS.test:5060;user=phone>, <tel:+15550001>')


def test_an_identity_shares_its_string_with_the_profile_it_takes_and_with_its_record():
    identity = "".join(["sip:alice", "@ims.test"])  # built, so not the literal's object
    listed = "".join(["sip:", "alice@ims.test"])
    assert identity == listed and identity is not listed
    impu = Impu(identity)
    impu.apply(RegState.REGISTERED, {}, Profile("alice@ims.test", ("tel:+1", listed),
                                                frozenset(), None))
    assert impu.profile.identities == ("tel:+1", identity)
    assert impu.profile.identities[1] is identity
    loaded = decode_impu(identity, encode_impu(impu))
    assert loaded.profile.identities[1] is identity
