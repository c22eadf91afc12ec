"""Bounds on reg-event subscriptions (actors/reg_event/limits.py): per identity, per watcher."""
from dataclasses import replace

import pytest

from actors.config import config_from_dict
from actors.reg_event.limits import SubscriptionLimits, refuse_new
from actors.reg_event.subscription import Subscription
from actors.vocabulary import Reply

NOW = 1000.0
UE, PCSCF = "sip:alice@ims.test", "sip:pcscf.ims.test"
BASE = Subscription(presentity=UE, watcher=UE, call_id="c", from_tag="f", to_tag="t",
                    remote_target="sip:alice@10.0.0.1", route_set=(), remote_cseq=1,
                    expires_at=NOW + 600)


def held(*watchers: str, expires=(600,)) -> list[Subscription]:
    return [replace(BASE, watcher=w, call_id=f"c{n}",
                    expires_at=NOW + expires[min(n, len(expires) - 1)])
            for n, w in enumerate(watchers)]


def test_a_watcher_at_its_share_is_refused_403_while_others_may_still_subscribe():
    limits = SubscriptionLimits(per_identity=5, per_watcher=2)
    subs = held(UE, UE)
    assert refuse_new(limits, subs, UE, NOW) == Reply(403, "Too many subscriptions from this watcher")
    assert refuse_new(limits, subs, PCSCF, NOW) is None


def test_a_full_identity_answers_503_until_its_first_subscription_expires():
    limits = SubscriptionLimits(per_identity=3, per_watcher=3)
    subs = held(UE, "sip:bob@ims.test", PCSCF, expires=(900, 120.4, 300))
    assert refuse_new(limits, subs, "sip:as@ims.test", NOW) == Reply(
        503, "Too many subscriptions to this identity", [("Retry-After", "121")])
    assert refuse_new(limits, held(UE, expires=(0,)) * 3, PCSCF, NOW).headers == [
        ("Retry-After", "1")]


def test_zero_means_unbounded_and_the_defaults_leave_room_for_every_device():
    assert refuse_new(SubscriptionLimits(), held(*[UE] * 500), UE, NOW) is None
    reg = config_from_dict({}).registrar
    assert (reg.max_subscriptions_per_identity, reg.max_subscriptions_per_watcher) == (50, 20)
    assert reg.max_subscriptions_per_watcher >= reg.max_contacts


def test_a_negative_bound_is_named():
    with pytest.raises(ValueError, match="registrar.max_subscriptions_per_watcher must not be"):
        config_from_dict({"registrar": {"max_subscriptions_per_watcher": -1}})
