"""The record codec: the only place that knows how an IMPU is laid out in the store.

Records are opaque bytes to the backends. Records written by earlier versions still load.
"""
from __future__ import annotations

import json
from operator import attrgetter

from actors.reg_event.subscription import Subscription
from actors.rules.impu import Impu, none_barred
from actors.vocabulary import Binding, Profile, RegState, StoreError

# Bump when the layout changes, and teach decode_impu to read the previous version.
# 2: bindings gained "allow"; reg-event subscriptions appended. 3: the end of an UNREGISTERED
# state's validity appended. 4: the time of the last SAR appended. 5: bindings gained
# "visited_network" and "icid", the profile its charging function addresses.
RECORD_VERSION = 5

# Bindings are stored as JSON arrays in this order: no key names repeated in every record.
BINDING_FIELDS = (
    "uri", "key", "expires_at", "q", "instance", "reg_id", "params", "call_id", "cseq", "path",
    "registered_at", "received", "user_agent", "allow", "visited_network", "icid",
)
# The binding fields each record version stored (1 had no "allow"; before 5, no charging).
_BINDING_FIELDS_OF = {1: BINDING_FIELDS[:-3], 2: BINDING_FIELDS[:-2], 3: BINDING_FIELDS[:-2],
                      4: BINDING_FIELDS[:-2], 5: BINDING_FIELDS}
_binding_values = attrgetter(*BINDING_FIELDS)
SUBSCRIPTION_FIELDS = (
    "presentity", "watcher", "call_id", "from_tag", "to_tag", "remote_target", "route_set",
    "remote_cseq", "expires_at", "event_id", "received", "local_cseq", "version", "transport",
)
_subscription_values = attrgetter(*SUBSCRIPTION_FIELDS)
# Built once: json.dumps with options builds an encoder per call, which doubles the cost.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def encode_impu(impu: Impu) -> bytes:
    """``[version, state, [binding...], profile|null, [subscription...], unreg_until|null,
    last_sar_at|null]``; the identity is the record's key.

    The cached reply of the last transaction is not kept: it only absorbs retransmissions.
    """
    profile = impu.profile
    record = [
        RECORD_VERSION,
        int(impu.state),
        [_binding_values(b) for b in impu.bindings.values()],
        None if profile is None else
        [profile.impi, profile.identities, sorted(profile.barred), profile.user_data,
         profile.wildcards, profile.charging],
        [_subscription_values(sub) for sub in impu.subscriptions.values()],
        impu.unreg_until,
        impu.last_sar_at,
    ]
    return _encoder.encode(record).encode()


def decode_impu(identity: str, data: bytes) -> Impu:
    try:
        version, state, bindings, profile, *rest = json.loads(data)
        names = _BINDING_FIELDS_OF.get(version)
        if names is None or len(rest) != min(version, 4) - 1:  # 5 added no top-level field
            raise ValueError(f"unknown record version {version!r}")
        impu = Impu(identity)
        impu.state = RegState(state)
        impu.bindings = {b.key: b for b in (_decode_binding(v, names) for v in bindings)}
        if profile is not None:
            # version 1: no wildcards; before 5: no charging function addresses
            impi, identities, barred, user_data, *more = profile
            impu.profile = Profile(impi, tuple(identities), none_barred(barred), user_data,
                                   tuple(more[0]) if more else (),
                                   tuple((kind, address) for kind, address in more[1])
                                   if len(more) > 1 else ())
        for values in rest[0] if rest else ():
            sub = _decode_subscription(values)
            impu.subscriptions[sub.key] = sub
        if version >= 3 and rest[1] is not None:  # before 3 the shard restarts the validity
            impu.unreg_until = float(rest[1])
        if version >= 4 and rest[2] is not None:  # before 4 the next re-REGISTER sends a SAR
            impu.last_sar_at = float(rest[2])
        return impu
    except (ValueError, TypeError) as exc:  # JSON, unpacking and enum errors are ValueErrors
        raise StoreError(f"corrupt record of {identity}: {exc}") from exc


def _decode_subscription(values: list) -> Subscription:
    if len(values) != len(SUBSCRIPTION_FIELDS):
        raise ValueError(f"subscription has {len(values)} fields, expected {len(SUBSCRIPTION_FIELDS)}")
    sub = Subscription(**dict(zip(SUBSCRIPTION_FIELDS, values)))
    sub.route_set = tuple(sub.route_set)
    return sub


def _decode_binding(values: list, names: tuple[str, ...]) -> Binding:
    if len(values) != len(names):
        raise ValueError(f"binding has {len(values)} fields, expected {len(names)}")
    binding = Binding(**dict(zip(names, values)))
    binding.params = tuple((name, value) for name, value in binding.params)
    binding.path = tuple(binding.path)
    binding.allow = tuple(binding.allow)
    return binding
