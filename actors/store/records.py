"""The record codec: the only place that knows how an IMPU is laid out in the store.

Records are opaque bytes to the backends. Records written by earlier versions still load.
A record is a MessagePack array; before version 6, the same array in JSON text.
"""
from __future__ import annotations

import json
from operator import attrgetter

import msgpack

from actors.reg_event.subscription import Subscription
from actors.rules.impu import Impu, none_barred, p_associated_uris, shared
from actors.rules.save import profile_from_user_data
from actors.vocabulary import Binding, Profile, RegState, StoreError

# Bump when the layout changes, and teach decode_impu to read the previous version.
# 2: bindings gained "allow"; reg-event subscriptions appended. 3: the end of an UNREGISTERED
# state's validity appended. 4: the time of the last SAR appended. 5: the HSS's Origin-Host
# appended (HSS affinity); bindings gained "visited_network" and "icid"; the profile its
# P-Associated-URI values as the HSS wrote them and its charging function addresses.
# 6: the layout of 5 in MessagePack instead of JSON: a fifth of the time to encode (every
# refresh rewrites its record), three quarters of the bytes.
RECORD_VERSION = 6

# Bindings are stored as arrays in this order: no key names repeated in every record.
BINDING_FIELDS = (
    "uri", "key", "expires_at", "q", "instance", "reg_id", "params", "call_id", "cseq", "path",
    "registered_at", "received", "user_agent", "allow", "visited_network", "icid",
)
# The binding fields each record version stored (1 had no "allow"; before 5, no charging).
_BINDING_FIELDS_OF = {1: BINDING_FIELDS[:-3], 2: BINDING_FIELDS[:-2], 3: BINDING_FIELDS[:-2],
                      4: BINDING_FIELDS[:-2], 5: BINDING_FIELDS, 6: BINDING_FIELDS}
# How many fields each version appended after the profile.
_APPENDED_OF = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4}
_binding_values = attrgetter(*BINDING_FIELDS)
SUBSCRIPTION_FIELDS = (
    "presentity", "watcher", "call_id", "from_tag", "to_tag", "remote_target", "route_set",
    "remote_cseq", "expires_at", "event_id", "received", "local_cseq", "version", "transport",
)
_subscription_values = attrgetter(*SUBSCRIPTION_FIELDS)
_packer = msgpack.Packer()  # built once; the shard encodes in its event loop only


def encode_impu(impu: Impu) -> bytes:
    """``[version, state, [binding...], profile|null, [subscription...], unreg_until|null,
    last_sar_at|null, hss_host|null]``; the identity is the record's key.

    The cached reply of the last transaction is not kept: it only absorbs retransmissions.
    """
    profile = impu.profile
    record = [
        RECORD_VERSION,
        int(impu.state),
        [_binding_values(b) for b in impu.bindings.values()],
        None if profile is None else
        [profile.impi, profile.identities, sorted(profile.barred), profile.user_data,
         profile.wildcards, profile.written, profile.charging],
        [_subscription_values(sub) for sub in impu.subscriptions.values()],
        impu.unreg_until,
        impu.last_sar_at,
        impu.hss_host,
    ]
    return _packer.pack(record)


def decode_impu(identity: str, data: bytes) -> Impu:
    try:
        version, state, bindings, profile, *rest = _fields(data)
        names = _BINDING_FIELDS_OF.get(version)
        if names is None or len(rest) != _APPENDED_OF[version]:
            raise ValueError(f"unknown record version {version!r}")
        impu = Impu(identity)
        impu.state = RegState(state)
        impu.bindings = {b.key: b for b in (_decode_binding(v, names) for v in bindings)}
        if profile is not None:
            impu.profile = _decode_profile(profile, version)
            impu.share_identity_with_profile()
        for values in rest[0] if rest else ():
            sub = _decode_subscription(values)
            impu.keep_subscription(sub)
        if version >= 3 and rest[1] is not None:  # before 3 the shard restarts the validity
            impu.unreg_until = float(rest[1])
        if version >= 4 and rest[2] is not None:  # before 4 the next re-REGISTER sends a SAR
            impu.last_sar_at = float(rest[2])
        if version >= 5 and rest[3] is not None:  # before 5 realm routing until the next SAA
            impu.hss_host = str(rest[3])
        return impu
    except (ValueError, TypeError) as exc:  # JSON, MessagePack, unpacking and enum errors
        raise StoreError(f"corrupt record of {identity}: {exc}") from exc


def _fields(data: bytes) -> list:
    if data[:1] == b"[":  # JSON text, versions 1 to 5; MessagePack starts no array with it
        return json.loads(data)
    fields = msgpack.unpackb(data)
    if not isinstance(fields, list):
        raise ValueError(f"a record is an array, not {type(fields).__name__}")
    return fields


def _decode_profile(values: list, version: int) -> Profile:
    impi, identities, barred, user_data, *more = values
    wildcards = tuple(more[0]) if more else ()  # version 1: none
    if version >= 5:
        written, charging = tuple(more[1]), tuple((kind, address) for kind, address in more[2])
    else:  # the user data parsed again; no charging addresses were kept
        written, charging = _written_in(user_data), ()
    return Profile(impi, tuple(identities), none_barred(barred), user_data, wildcards, written,
                   charging)


def _written_in(user_data: str | None) -> tuple[str, ...]:
    if not user_data:
        return ()
    try:  # the values in full: the record's identities may differ from the user data's
        return tuple(p_associated_uris(profile_from_user_data(user_data, wildcards=True)))
    except ValueError:  # user data stored before a rule it now fails
        return ()


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
    binding.path = shared(tuple(binding.path))
    binding.allow = shared(tuple(binding.allow))
    if binding.user_agent:
        binding.user_agent = shared(binding.user_agent)
    return binding
