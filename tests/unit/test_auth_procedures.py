"""REGISTER authentication (TS 24.229 5.4.1.2) against the HSS emulator's own MAR logic, with
the UE side computed by aka.ue_respond and digest.response."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest

from actors.auth import aka, digest
from actors.auth.challenges import MAX_SENT, AuthVector, PendingChallenges
from actors.auth.milenage import opc
from actors.auth.procedures import (
    AuthContext,
    Authorized,
    AuthRequest,
    AuthSettings,
    BadRequest,
    Challenge,
    Forbidden,
    Stale,
    Unavailable,
    authorize_register,
)
from actors.config import AuthConfig
from actors.vocabulary import RegisterRequest, Reply
from scripts.hss_emulator.config import TEST_K, TEST_OP, HssConfig, SubscriberConfig
from scripts.hss_emulator.emulator import HssEmulator
from transport.diameter.codec import parse_message, serialize
from transport.diameter.cx import MaaResult, ServerAssignmentType, decode_maa, encode_mar
from transport.diameter.router import CxUnavailable

IMPI, IMPU, URI = "alice@ims.test", "sip:alice@ims.test", "sip:ims.test"
SCSCF = "sip:scscf.ims.test:5060"
OPC = opc(TEST_K, TEST_OP)
NOW = 1000.0
INITIAL = f'Digest username="{IMPI}", realm="ims.test", uri="{URI}", nonce="", response=""'


class Hss:
    """MARs answered by the emulator through the Diameter codec; records what was asked."""

    def __init__(self, *subscribers: SubscriberConfig):
        self.emulator = HssEmulator(HssConfig(auto_provision_domain="ims.test",
                                              subscribers=subscribers))
        self.requests = []
        self.down = False

    async def mar(self, request):
        self.requests.append(request)
        if self.down:
            raise CxUnavailable("no open Diameter peer for realm ims.test")
        msg = parse_message(serialize(encode_mar(request, "scscf.ims.test", "ims.test", "s;1;1",
                                                 "ims.test")))
        return decode_maa(parse_message(serialize(self.emulator.handle(msg))))


def context(hss, **settings) -> AuthContext:
    return AuthContext(AuthConfig(realm="ims.test", **settings), SCSCF, hss.mar,
                       random_bytes=lambda size: bytes(range(size)))


def register(pending, ctx, authorization=INITIAL, *, now=NOW, registered=False,
             integrity_protected=None, impi=IMPI, body=b""):
    request = AuthRequest(impi, IMPU, authorization, integrity_protected, body=body)
    return asyncio.run(authorize_register(pending, request, registered_with_impi=registered,
                                          now=now, context=ctx))


def challenge_params(outcome) -> dict[str, str]:
    assert isinstance(outcome, Challenge) and outcome.status == 401, outcome
    ((name, value),) = outcome.headers
    assert name == "WWW-Authenticate" and value.startswith("Digest ")
    return digest.parse_params(value[len("Digest "):])


def aka_authorization(params, sqn_ms=0, *, res=None, nc="00000001", qop="auth", body=b"",
                      uri=URI):
    """What the UE answers to an AKAv1-MD5 challenge: RES as the password, or AUTS."""
    rand, autn, _ = aka.split_aka_nonce(params["nonce"])
    answer = aka.ue_respond(TEST_K, OPC, rand, autn, sqn_ms)
    if answer.synchronisation_failure:
        return (f'Digest username="{IMPI}", realm="{params["realm"]}", '
                f'nonce="{params["nonce"]}", uri="{uri}", response="", algorithm=AKAv1-MD5, '
                f'auts="{aka.encode_auts(answer.auts)}"'), answer
    ha1 = digest.aka_ha1(IMPI, params["realm"], answer.res if res is None else res)
    return _credentials(params, ha1, nc, qop, body, uri, "AKAv1-MD5"), answer


def md5_authorization(params, password="imstest", nc="00000001", qop="auth"):
    return _credentials(params, digest.ha1(IMPI, params["realm"], password), nc, qop, b"", URI,
                        "MD5")


def _credentials(params, ha1, nc, qop, body, uri, algorithm):
    cnonce = "0a4f113b"
    value = digest.response(ha1, params["nonce"], "REGISTER", uri, qop, nc, cnonce, body)
    text = (f'Digest username="{IMPI}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{value}", algorithm={algorithm}')
    return text + (f", qop={qop}, nc={nc}, cnonce=\"{cnonce}\"" if qop else "")


# -- IMS AKA ------------------------------------------------------------------------------------

def test_aka_challenge_then_the_right_answer_is_authorized():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss)
    params = challenge_params(register(pending, ctx))
    (mar,) = hss.requests
    assert (mar.public_identity, mar.user_name, mar.server_name) == (IMPU, IMPI, SCSCF)
    assert (mar.auth_scheme, mar.number_auth_items, mar.resync_authorization) == (
        "Digest-AKAv1-MD5", 1, None)
    assert (params["realm"], params["algorithm"], params["qop"]) == (
        "ims.test", "AKAv1-MD5", "auth,auth-int")
    authorization, answer = aka_authorization(params)
    # TS 24.229 5.4.1.2.1: CK and IK for the P-CSCF's security associations
    assert (params["ck"], params["ik"]) == (answer.ck.hex(), answer.ik.hex())
    assert "stale" not in params and len(pending) == 1
    assert register(pending, ctx, authorization) == Authorized(IMPI, verified=True)
    assert len(pending) == 0 and len(hss.requests) == 1  # max_nonce_reuse 0: the vector is used up


def test_a_wrong_response_is_forbidden_and_frees_the_vector():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss)
    params = challenge_params(register(pending, ctx))
    wrong, _ = aka_authorization(params, res=b"\x00" * 8)
    outcome = register(pending, ctx, wrong)
    assert outcome == Forbidden(403, "Forbidden - Authentication failed",
                                assignment=ServerAssignmentType.AUTHENTICATION_FAILURE)
    assert outcome.reply() == Reply(403, "Forbidden - Authentication failed", [])
    assert len(pending) == 0
    right, _ = aka_authorization(params)  # too late: the nonce is gone
    assert isinstance(register(pending, ctx, right), Stale)


def test_an_unknown_nonce_gets_a_stale_challenge_with_a_fresh_nonce():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss)
    first = challenge_params(register(pending, ctx))
    answer, _ = aka_authorization(first)
    outcome = register(PendingChallenges(), ctx, answer)  # e.g. another S-CSCF's challenge
    assert isinstance(outcome, Stale)
    params = challenge_params(outcome)
    assert params["stale"] == "TRUE" and params["nonce"] != first["nonce"]
    assert len(hss.requests) == 2


def test_an_expired_vector_is_stale_and_freed():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss, auth_data_timeout=30)
    params = challenge_params(register(pending, ctx))
    answer, _ = aka_authorization(params)
    outcome = register(pending, ctx, answer, now=NOW + 30)
    assert isinstance(outcome, Stale)
    fresh = challenge_params(outcome)["nonce"]
    assert pending.get(params["nonce"], NOW + 30) is None
    assert pending.get(fresh, NOW + 30) is not None and len(pending) == 1


def test_resynchronisation_round_trip():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss)
    params = challenge_params(register(pending, ctx))
    resync, answer = aka_authorization(params, sqn_ms=1000)  # the UE has seen SQN 1000
    assert answer.synchronisation_failure
    outcome = register(pending, ctx, resync)
    assert type(outcome) is Challenge
    rand = aka.split_aka_nonce(params["nonce"])[0]
    assert hss.requests[-1].resync_authorization == rand + answer.auts
    fresh = challenge_params(outcome)
    authorization, answer = aka_authorization(fresh, sqn_ms=1000)
    assert answer.sqn == 1001
    assert register(pending, ctx, authorization) == Authorized(IMPI, verified=True)


def test_a_forged_auts_is_forbidden_by_the_hss():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss)
    params = challenge_params(register(pending, ctx))
    forged = (f'Digest username="{IMPI}", realm="ims.test", nonce="{params["nonce"]}", '
              f'uri="{URI}", response="", auts="{aka.encode_auts(bytes(14))}"')
    assert register(pending, ctx, forged) == Forbidden(
        403, "Forbidden - HSS Authorization Rejected")
    bad_auts = forged.replace(aka.encode_auts(bytes(14)), "AAAA")
    assert register(pending, ctx, bad_auts) == BadRequest(
        400, "Bad Request - Malformed auts or nonce")


def test_spare_vectors_serve_later_challenges_without_a_mar():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss, av_request_at_once=3)
    nonces = [challenge_params(register(pending, ctx))["nonce"] for _ in range(3)]
    assert len(hss.requests) == 1 and hss.requests[0].number_auth_items == 3
    assert len(set(nonces)) == 3
    challenge_params(register(pending, ctx))
    assert len(hss.requests) == 2
    # each spare vector is still good: SQNs rise in the order they are handed out
    authorization, answer = aka_authorization({"realm": "ims.test", "nonce": nonces[2]})
    assert answer.sqn == 3
    assert register(pending, ctx, authorization) == Authorized(IMPI, verified=True)


def test_max_nonce_reuse_lets_a_nonce_authorize_again_with_a_higher_nc():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss, max_nonce_reuse=1)
    params = challenge_params(register(pending, ctx))
    first, _ = aka_authorization(params, nc="00000001")
    assert register(pending, ctx, first) == Authorized(IMPI, verified=True)
    assert isinstance(register(pending, ctx, first), Stale)  # a replay: nc did not go up
    params = challenge_params(register(pending, ctx))
    assert register(pending, ctx, aka_authorization(params, nc="00000001")[0]).verified
    assert register(pending, ctx, aka_authorization(params, nc="00000002")[0]).verified
    assert isinstance(register(pending, ctx, aka_authorization(params, nc="00000003")[0]), Stale)


def test_auth_int_covers_the_body():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss)
    params = challenge_params(register(pending, ctx))
    authorization, _ = aka_authorization(params, qop="auth-int", body=b"<x/>")
    assert register(pending, ctx, authorization, body=b"<y/>") == Forbidden(
        403, "Forbidden - Authentication failed",
        assignment=ServerAssignmentType.AUTHENTICATION_FAILURE)
    params = challenge_params(register(pending, ctx))
    authorization, _ = aka_authorization(params, qop="auth-int", body=b"<x/>")
    assert register(pending, ctx, authorization, body=b"<x/>").verified


def test_a_qop_not_offered_fails():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss, registration_qop="auth")
    params = challenge_params(register(pending, ctx))
    assert params["qop"] == "auth"
    authorization, _ = aka_authorization(params, qop="auth-int")
    assert isinstance(register(pending, ctx, authorization), Forbidden)
    params = challenge_params(register(pending, ctx))
    rfc2069, _ = aka_authorization(params, qop=None)  # qop was offered: the UE must use one
    assert isinstance(register(pending, ctx, rfc2069), Forbidden)


def test_without_qop_offered_the_rfc2069_answer_is_checked():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss, registration_qop="")
    params = challenge_params(register(pending, ctx))
    assert "qop" not in params
    authorization, _ = aka_authorization(params, qop=None)
    assert register(pending, ctx, authorization).verified


def test_sip_digest_with_the_ha1_of_the_hss():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss, registration_default_algorithm="MD5")
    params = challenge_params(register(pending, ctx))
    assert hss.requests[0].auth_scheme == "SIP Digest"
    assert (params["algorithm"], params["realm"], params["qop"]) == ("MD5", "ims.test", "auth")
    assert "ck" not in params and "ik" not in params
    assert isinstance(register(pending, ctx, md5_authorization(params, "wrong")), Forbidden)
    params = challenge_params(register(pending, ctx))
    assert register(pending, ctx, md5_authorization(params)) == Authorized(IMPI, verified=True)


def test_the_ue_may_ask_for_md5_in_its_first_register():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss)  # AKA by default
    params = challenge_params(register(pending, ctx, INITIAL + ", algorithm=MD5"))
    assert params["algorithm"] == "MD5" and hss.requests[0].auth_scheme == "SIP Digest"


def test_hss_selected_takes_the_subscriber_scheme():
    only_md5 = SubscriberConfig(IMPI, (IMPU,), password="secret")
    hss, pending = Hss(only_md5), PendingChallenges()
    ctx = context(hss, registration_default_algorithm="HSS-Selected")
    params = challenge_params(register(pending, ctx))
    assert hss.requests[0].auth_scheme == "Unknown" and params["algorithm"] == "MD5"
    assert register(pending, ctx, md5_authorization(params, "secret")).verified


# -- when the REGISTER is not challenged --------------------------------------------------------

@pytest.mark.parametrize("claim", ["yes", "tls-yes", "ip-assoc-yes"])
def test_integrity_protected_on_an_initial_register_is_still_challenged(claim):
    hss, pending = Hss(), PendingChallenges()
    outcome = register(pending, context(hss), integrity_protected=claim, registered=False)
    assert isinstance(outcome, Challenge) and len(hss.requests) == 1


@pytest.mark.parametrize("claim", ["yes", "tls-yes", "ip-assoc-yes"])
def test_a_protected_re_register_of_the_registered_impi_is_not_challenged(claim):
    hss = Hss()
    old = f'Digest username="{IMPI}", realm="ims.test", uri="{URI}", nonce="b2xk", response="00"'
    outcome = register(PendingChallenges(), context(hss), old, integrity_protected=claim,
                       registered=True)
    assert outcome == Authorized(IMPI, verified=False) and hss.requests == []


@pytest.mark.parametrize("claim", ["no", "tls-pending", "ip-assoc-pending", None])
def test_an_unprotected_re_register_is_challenged(claim):
    hss = Hss()
    outcome = register(PendingChallenges(), context(hss), integrity_protected=claim,
                       registered=True)
    assert isinstance(outcome, Challenge)


def test_authentication_disabled_authorizes_everything():
    hss = Hss()
    assert register(PendingChallenges(), context(hss, enabled=False), None) == Authorized(
        IMPI, verified=False)
    assert hss.requests == []


def test_ignore_failed_auth_lets_wrong_and_stale_answers_through():
    hss, pending = Hss(), PendingChallenges()
    ctx = context(hss, ignore_failed_auth=1)
    params = challenge_params(register(pending, ctx))
    wrong, _ = aka_authorization(params, res=b"\x00" * 8)
    assert register(pending, ctx, wrong) == Authorized(IMPI, verified=False)
    assert register(PendingChallenges(), ctx, wrong) == Authorized(IMPI, verified=False)


# -- refusals -----------------------------------------------------------------------------------

def test_no_authorization_header_is_challenged():
    hss, pending = Hss(), PendingChallenges()
    assert isinstance(register(pending, context(hss), None), Challenge)


def test_an_unreachable_hss_is_503_with_retry_after():
    hss = Hss()
    hss.down = True
    outcome = register(PendingChallenges(), context(hss))
    assert isinstance(outcome, Unavailable)
    assert outcome.reply() == Reply(503, "HSS unavailable: no open Diameter peer for realm "
                                         "ims.test", [("Retry-After", "5")])


@pytest.mark.parametrize("subscriber, impi, reason", [
    (None, "eve@elsewhere.test", "Forbidden - HSS Identities don't match"),
    (SubscriberConfig(IMPI, (IMPU,)), IMPI, "Forbidden - HSS Authentication Scheme not supported"),
])
def test_a_refusing_hss_is_403_with_its_reason(subscriber, impi, reason):
    hss = Hss(*([subscriber] if subscriber else []))
    outcome = register(PendingChallenges(), context(hss), INITIAL.replace(IMPI, impi), impi=impi)
    assert outcome == Forbidden(403, reason)


def test_an_unknown_user_is_403():
    hss = Hss()
    request = AuthRequest("eve@elsewhere.test", "sip:eve@elsewhere.test", None)
    outcome = asyncio.run(authorize_register(PendingChallenges(), request,
                                             registered_with_impi=False, now=NOW,
                                             context=context(hss)))
    assert outcome == Forbidden(403, "Forbidden - HSS User Unknown")


@pytest.mark.parametrize("maa, expected", [
    (MaaResult(3004, None, None, None, None, []), Unavailable),  # DIAMETER_TOO_BUSY
    (MaaResult(2001, None, None, None, 1, []), Forbidden),  # success without a vector
])
def test_answers_without_a_vector(maa, expected):
    async def mar(_request):
        return maa
    ctx = AuthContext(AuthConfig(realm="ims.test"), SCSCF, mar)
    request = AuthRequest(IMPI, IMPU, None)
    outcome = asyncio.run(authorize_register(PendingChallenges(), request,
                                             registered_with_impi=False, now=NOW, context=ctx))
    assert isinstance(outcome, expected)
    assert outcome.status == (503 if expected is Unavailable else 403)


@pytest.mark.parametrize("authorization", [
    "Basic YWxpY2U6c2VjcmV0", 'Digest username="alice@ims.test", realm=', "Digest"])
def test_malformed_credentials_are_a_bad_request(authorization):
    outcome = register(PendingChallenges(), context(Hss()), authorization)
    assert outcome == BadRequest(400, "Bad Request - Malformed Authorization header")


def test_no_private_identity_is_403():
    outcome = register(PendingChallenges(), context(Hss()), None, impi=None)
    assert outcome == Forbidden(403, "Forbidden - No private identity")


def test_auth_request_of_a_register_request():
    register_request = RegisterRequest(
        aor=IMPU, impi=IMPI, call_id="c", cseq=1, contacts=[], star=False, expires=None,
        authorization=INITIAL, integrity_protected="no")
    assert AuthRequest.of_register(register_request, b"body") == AuthRequest(
        IMPI, IMPU, INITIAL, "no", "REGISTER", b"body")


# -- PendingChallenges --------------------------------------------------------------------------

def vector(nonce: str, impi: str = IMPI) -> AuthVector:
    return AuthVector(impi, "MD5", "ims.test", nonce, "auth", ha1="f" * 32, xres=b"secret-xres")


def test_pending_challenges_never_show_their_secrets():
    pending = PendingChallenges()
    pending.send(vector("n1"), NOW, 60)
    pending.keep_spare([vector("n2")])
    assert repr(pending) == "<PendingChallenges 1 sent, 1 spare>"
    assert "f" * 32 not in repr(vector("n1")) and "secret" not in repr(pending.get("n1", NOW))


def test_pending_challenges_keep_the_newest_and_expire_on_time():
    pending = PendingChallenges()
    for n in range(MAX_SENT + 1):
        pending.send(vector(f"n{n}"), NOW + n, 60)
    assert pending.get("n0", NOW) is None and pending.get("n1", NOW + 5) is not None
    assert pending.next_expiry == NOW + 61
    pending.expire(NOW + 62)
    assert len(pending) == MAX_SENT - 2 and pending.next_expiry == NOW + 63


def test_spare_vectors_are_per_impi_and_dropped_after_a_resync():
    pending = PendingChallenges()
    pending.keep_spare([vector("a1"), vector("b1", "bob@ims.test"), vector("a2")])
    assert pending.take_spare("bob@ims.test", None).nonce == "b1"
    assert pending.take_spare(IMPI, "AKAv1-MD5") is None
    pending.drop_spare(IMPI)
    assert len(pending) == 0


def test_the_settings_protocol_is_the_config_section():
    """AuthContext takes actors.config.AuthConfig as it is: the same attributes."""
    assert set(AuthSettings.__annotations__) == {f.name for f in dataclasses.fields(AuthConfig)}
