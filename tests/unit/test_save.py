"""save(): plan, SAR, implicit set and reply, with the HSS and other shards faked."""
import asyncio
import dataclasses
from pathlib import Path

import pytest

from actors.rules.expires import ExpiresPolicy
from actors.rules.impu import Impu, RegisterRules
from actors.rules.save import SaveContext, profile_from_user_data, save
from actors.vocabulary import RETRY_AFTER, RegState, Reply, StoreError
from tests.unit.test_impu import contact, register
from transport.diameter.cx import SaaResult
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.router import CxUnavailable
from transport.diameter.user_data import UserDataError

USER_DATA = """<?xml version="1.0" encoding="UTF-8"?>
<IMSSubscription><PrivateID>alice@ims.test</PrivateID>
<ServiceProfile>
 <PublicIdentity><Identity>sip:alice@ims.test</Identity></PublicIdentity>
 <PublicIdentity><Identity>tel:+15550001</Identity></PublicIdentity>
 <PublicIdentity><BarringIndication>1</BarringIndication><Identity>sip:alice-barred@ims.test</Identity></PublicIdentity>
</ServiceProfile></IMSSubscription>"""


def saa(result=2001, experimental=None, user_data=USER_DATA):
    return SaaResult(result_code=result, experimental_result_code=experimental, user_data=user_data,
                     charging_information=None, associated_identities=[], user_name=None,
                     wildcarded_public_identity=None)


class Fakes:
    def __init__(self, answer):
        self.answer = answer
        self.sars = []
        self.propagated = []
        self.propagation_reasons = []
        self.persisted = []
        self.store_down = False

    async def sar(self, request):
        self.sars.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def propagate(self, updates):
        (state,) = {u.state for u in updates}  # one set, one state
        (bindings,) = {tuple(sorted(u.bindings)) for u in updates}
        self.propagated.append(([u.identity for u in updates], state, list(bindings)))
        self.propagation_reasons += sorted({u.reason for u in updates})

    async def persist(self, impu):
        if self.store_down:
            raise StoreError("redis 127.0.0.1:6379: write failed")
        self.persisted.append((impu.identity, impu.state, sorted(impu.bindings)))

    def context(self, **rules):
        return SaveContext(
            rules=RegisterRules(expires=ExpiresPolicy(3600, 0, 60, 0), **rules),
            scscf_name="sip:scscf.ims.test:5060", dest_realm="ims.test",
            sar=self.sar, propagate=self.propagate, persist=self.persist, clock=lambda: 1000.0,
            unreg_validity=1800,
        )


def run(impu, req, fakes, **rules):
    return asyncio.run(save(impu, req, fakes.context(**rules)))


def test_first_register_sends_sar_and_registers_the_implicit_set():
    fakes = Fakes(saa())
    impu = Impu("sip:alice@ims.test")
    reply = run(impu, register(contact("sip:a@10.0.0.1", 600)), fakes)
    assert reply.status == 200
    (sar,) = fakes.sars
    assert (sar.public_identity, sar.user_name, sar.server_name, sar.assignment_type) == (
        "sip:alice@ims.test", "alice@ims.test", "sip:scscf.ims.test:5060", SAT.REGISTRATION)
    assert sar.user_data_already_available is False
    assert fakes.propagated == [(["tel:+15550001", "sip:alice-barred@ims.test"], RegState.REGISTERED, ["uri:sip:a@10.0.0.1"])]
    assert fakes.propagation_reasons == ["user"]
    assert ("P-Associated-URI", "<sip:alice@ims.test>, <tel:+15550001>") in reply.headers
    assert ("Service-Route", "<sip:orig@scscf.ims.test:5060;lr>") in reply.headers
    assert impu.state == RegState.REGISTERED
    assert fakes.persisted == [("sip:alice@ims.test", RegState.REGISTERED, ["uri:sip:a@10.0.0.1"])]


def test_store_failure_is_503_and_the_previous_state_stays():
    fakes = Fakes(saa())
    impu = Impu("sip:alice@ims.test")
    run(impu, register(contact("sip:a@h", 600)), fakes)
    fakes.store_down = True
    reply = run(impu, register(contact("sip:b@h", 600), cseq=2), fakes)
    assert reply == Reply(503, "Registration store unavailable", [("Retry-After", RETRY_AFTER)])
    assert sorted(impu.bindings) == ["uri:sip:a@h"]


def test_retransmission_gets_the_cached_reply_without_a_second_sar():
    fakes = Fakes(saa())
    impu = Impu("sip:alice@ims.test")
    req = register(contact("sip:a@10.0.0.1", 600))
    first = run(impu, req, fakes)
    assert run(impu, req, fakes) == first
    assert len(fakes.sars) == 1


def test_unknown_user_and_identity_mismatch_are_403_and_nothing_is_stored():
    for code, reason in ((5001, "User unknown"), (5002, "Identities don't match")):
        impu = Impu("sip:alice@ims.test")
        reply = run(impu, register(contact("sip:a@h", 600)), Fakes(saa(result=None, experimental=code)))
        assert reply == Reply(403, reason)
        assert impu.state == RegState.NOT_REGISTERED and impu.bindings == {}


def test_hss_unavailable_is_503_with_retry_after_and_nothing_is_stored():
    impu = Impu("sip:alice@ims.test")
    reply = run(impu, register(contact("sip:a@h", 600)), Fakes(CxUnavailable("no HSS peer is up")))
    assert reply.status == 503 and ("Retry-After", RETRY_AFTER) in reply.headers
    assert impu.bindings == {}


def test_barred_identity_is_403():
    impu = Impu("sip:alice-barred@ims.test")
    req = register(contact("sip:a@h", 600))
    req.aor = "sip:alice-barred@ims.test"
    fakes = Fakes(saa())
    assert run(impu, req, fakes) == Reply(403, "Public identity barred")
    assert impu.bindings == {}
    # the HSS recorded the REGISTRATION: it is told the identity is not registered here after all
    assert [s.assignment_type for s in fakes.sars] == [SAT.REGISTRATION, SAT.USER_DEREGISTRATION]
    assert fakes.sars[1].public_identity == "sip:alice-barred@ims.test"


def test_invalid_user_data_is_500_and_nothing_is_stored():
    impu = Impu("sip:alice@ims.test")
    reply = run(impu, register(contact("sip:a@h", 600)), Fakes(saa(user_data="<IMSSubscription>")))
    assert reply == Reply(500, "Invalid user data from HSS")
    assert impu.bindings == {}


def test_last_contact_removed_sends_user_deregistration_and_drops_the_profile():
    fakes = Fakes(saa())
    impu = Impu("sip:alice@ims.test")
    run(impu, register(contact("sip:a@h", 600)), fakes)
    fakes.answer = saa(user_data=None)
    reply = run(impu, register(contact("sip:a@h", 0), cseq=2), fakes)
    assert reply == Reply(200, "OK", [("Contact", "<sip:a@h>;expires=0")])
    assert fakes.sars[-1].assignment_type == SAT.USER_DEREGISTRATION
    assert impu.state == RegState.NOT_REGISTERED and impu.profile is None
    assert fakes.propagated[-1][1:] == (RegState.NOT_REGISTERED, [])


def test_profile_lists_identities_default_first_and_marks_barred():
    profile = profile_from_user_data(USER_DATA, None)
    assert profile.impi == "alice@ims.test"
    assert profile.identities == ("sip:alice@ims.test", "tel:+15550001", "sip:alice-barred@ims.test")
    assert profile.associated_uris() == ["sip:alice@ims.test", "tel:+15550001"]


DTD = str(Path(__file__).resolve().parents[1] / "data" / "CxDataType.dtd")

WILDCARD_DATA = """<IMSSubscription><PrivateID>psi@ims.test</PrivateID>
<ServiceProfile>
 <PublicIdentity><Identity>sip:conference@ims.test</Identity></PublicIdentity>
 <PublicIdentity><Identity>sip:conf!.*!@ims.test</Identity>
  <Extension><IdentityType>2</IdentityType><WildcardedPSI>sip:conf!.*!@ims.test</WildcardedPSI></Extension>
 </PublicIdentity>
</ServiceProfile></IMSSubscription>"""


def test_user_data_dtd_validates_only_when_configured():
    assert profile_from_user_data(USER_DATA, dtd_path=DTD).identities[0] == "sip:alice@ims.test"
    odd = USER_DATA.replace("<PrivateID>alice@ims.test</PrivateID>", "<PrivateID>a</PrivateID><Surprise/>")
    assert profile_from_user_data(odd).impi == "a"
    with pytest.raises(UserDataError, match="does not match the DTD"):
        profile_from_user_data(odd, dtd_path=DTD)


def test_wildcarded_psis_are_kept_only_with_support_wildcard_psi():
    assert profile_from_user_data(WILDCARD_DATA).wildcards == ()
    profile = profile_from_user_data(WILDCARD_DATA, wildcards=True)
    assert profile.identities == ("sip:conference@ims.test",)
    assert profile.wildcard_for("sip:conf42@ims.test") == "sip:conf!.*!@ims.test"
    assert profile.wildcard_for("sip:alice@ims.test") is None


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def refreshing(fakes, clock, interval, **rules):
    """A registered alice (one SAR REGISTRATION at ``clock.now``) and her context."""
    ctx = fakes.context(sar_reregistration_interval=interval, **rules)
    ctx.clock = clock
    impu = Impu("sip:alice@ims.test")
    assert asyncio.run(save(impu, register(contact("sip:a@h", 600)), ctx)).status == 200
    return impu, ctx


def test_refresh_within_the_interval_sends_no_sar_and_keeps_the_profile():
    fakes, clock = Fakes(saa()), Clock()
    impu, ctx = refreshing(fakes, clock, 300)
    clock.now += 299  # the binding (600 s) still lives
    reply = asyncio.run(save(impu, register(contact("sip:a@h", 600), cseq=2), ctx))
    assert reply.status == 200
    assert [s.assignment_type for s in fakes.sars] == [SAT.REGISTRATION]
    assert ("Contact", "<sip:a@h>;expires=600") in reply.headers
    assert ("P-Associated-URI", "<sip:alice@ims.test>, <tel:+15550001>") in reply.headers
    assert impu.bindings["uri:sip:a@h"].expires_at == clock.now + 600
    assert impu.last_sar_at == 1000.0  # the HSS heard nothing since
    assert fakes.persisted[-1] == ("sip:alice@ims.test", RegState.REGISTERED, ["uri:sip:a@h"])


def test_refresh_after_the_interval_sends_re_registration_and_restarts_it():
    fakes, clock = Fakes(saa()), Clock()
    impu, ctx = refreshing(fakes, clock, 300)
    clock.now += 300
    asyncio.run(save(impu, register(contact("sip:a@h", 600), cseq=2), ctx))
    assert [s.assignment_type for s in fakes.sars] == [SAT.REGISTRATION, SAT.RE_REGISTRATION]
    assert impu.last_sar_at == clock.now


def test_interval_zero_sends_a_sar_on_every_re_register_as_kamailio():
    fakes, clock = Fakes(saa()), Clock()
    impu, ctx = refreshing(fakes, clock, 0)
    clock.now += 1
    asyncio.run(save(impu, register(contact("sip:a@h", 600), cseq=2), ctx))
    assert [s.assignment_type for s in fakes.sars] == [SAT.REGISTRATION, SAT.RE_REGISTRATION]


def test_what_the_hss_must_learn_always_sends_its_sar():
    cases = {
        "user_data_always": ({"user_data_always": True}, register(contact("sip:a@h", 600), cseq=2),
                             SAT.RE_REGISTRATION),
        "another IMPI": ({}, dataclasses.replace(register(contact("sip:a@h", 600), cseq=2),
                                                 impi="mallory@ims.test"), SAT.RE_REGISTRATION),
        "a binding removed": ({}, register(contact("sip:b@h", 600), contact("sip:a@h", 0), cseq=2),
                              SAT.RE_REGISTRATION),
        "de-registration": ({}, register(contact("sip:a@h", 0), cseq=2), SAT.USER_DEREGISTRATION),
    }
    for name, (rules, req, assignment) in cases.items():
        fakes, clock = Fakes(saa()), Clock()
        impu, ctx = refreshing(fakes, clock, 1800, **rules)
        clock.now += 10
        asyncio.run(save(impu, req, ctx))
        assert [s.assignment_type for s in fakes.sars] == [SAT.REGISTRATION, assignment], name


def test_a_contact_added_within_the_interval_sends_no_sar():
    fakes, clock = Fakes(saa()), Clock()
    impu, ctx = refreshing(fakes, clock, 1800)
    clock.now += 10
    reply = asyncio.run(save(impu, register(contact("sip:b@h", 600), cseq=2), ctx))
    assert reply.status == 200 and len(fakes.sars) == 1
    assert sorted(impu.bindings) == ["uri:sip:a@h", "uri:sip:b@h"]
