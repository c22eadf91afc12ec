"""Configuration of the HSS emulator, read from TOML.

    origin_host = "hss.ims.test"
    origin_realm = "ims.test"
    auto_provision_domain = "ims.test"    # any sip:NAME@ims.test is subscriber NAME@ims.test
    admin_listen = "127.0.0.1:3869"       # optional JSON admin interface

    [charging_information]                # optional, sent in every successful SAA
    primary_event_charging_function_name = "aaa://ecf.ims.test"

    [[subscriber]]
    impi = "alice@ims.test"
    impus = ["sip:alice@ims.test", "tel:+15550001"]   # one implicit set, default first
    barred = ["sip:alice-barred@ims.test"]
    wildcard = ["sip:alice-chat!.*!@ims.test"]        # wildcarded PSIs of the set
    password = "secret"                               # enables SIP Digest in MAA
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass

from transport.diameter.cx_base import CHARGING_INFORMATION_KEYS
from transport.diameter.user_data import UserDataError, wildcard_regex


class HssConfigError(ValueError):
    """The configuration is malformed; the message names the offending key."""


@dataclass(frozen=True)
class SubscriberConfig:
    impi: str
    impus: tuple[str, ...]  # the implicit registration set, default IMPU first
    barred: tuple[str, ...] = ()
    wildcards: tuple[str, ...] = ()
    password: str | None = None


@dataclass(frozen=True)
class HssConfig:
    origin_host: str = "hss.ims.test"
    origin_realm: str = "ims.test"
    auto_provision_domain: str | None = None
    admin_listen: str | None = None
    watchdog_interval: float = 30.0
    charging_information: dict | None = None
    subscribers: tuple[SubscriberConfig, ...] = ()

    @classmethod
    def from_toml(cls, source: str | os.PathLike | dict) -> HssConfig:
        """From a TOML file path, or from the dict such a file parses into."""
        return _parse(source if isinstance(source, dict) else cls.read_toml(source))

    @staticmethod
    def read_toml(path: str | os.PathLike) -> dict:
        """The raw table of a TOML file, for callers that complete it before from_toml()."""
        try:
            with open(path, "rb") as file:
                return tomllib.load(file)
        except OSError as exc:
            raise HssConfigError(f"cannot read {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise HssConfigError(f"{path}: {exc}") from None


_TOP_KEYS = {"origin_host", "origin_realm", "auto_provision_domain", "admin_listen",
             "watchdog_interval", "charging_information", "subscriber"}
_SUBSCRIBER_KEYS = {"impi", "impus", "barred", "wildcard", "password"}


def _parse(table: dict) -> HssConfig:
    _no_unknown_keys(table, _TOP_KEYS, "")
    watchdog = table.get("watchdog_interval", 30.0)
    if not isinstance(watchdog, (int, float)) or isinstance(watchdog, bool) or watchdog <= 0:
        raise HssConfigError("watchdog_interval: expected a positive number of seconds")
    entries = table.get("subscriber", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise HssConfigError("subscriber: expected an array of tables ([[subscriber]])")
    subscribers = tuple(_subscriber(entry, f"subscriber[{i}]") for i, entry in enumerate(entries))
    _no_shared_identities(subscribers)
    return HssConfig(
        origin_host=_string(table, "origin_host", "", default="hss.ims.test"),
        origin_realm=_string(table, "origin_realm", "", default="ims.test"),
        auto_provision_domain=_string(table, "auto_provision_domain", ""),
        admin_listen=_string(table, "admin_listen", ""),
        watchdog_interval=float(watchdog),
        charging_information=_charging(table.get("charging_information")),
        subscribers=subscribers)


def _subscriber(entry: dict, where: str) -> SubscriberConfig:
    _no_unknown_keys(entry, _SUBSCRIBER_KEYS, where)
    impi = _string(entry, "impi", where, required=True)
    impus = _strings(entry, "impus", where)
    if not impus:
        raise HssConfigError(f"{where}.impus: expected a non-empty list of public identities")
    wildcards = _strings(entry, "wildcard", where)
    for pattern in wildcards:
        try:
            wildcard_regex(pattern)
        except UserDataError as exc:
            raise HssConfigError(f"{where}.wildcard: {exc}") from None
    return SubscriberConfig(impi=impi, impus=impus, barred=_strings(entry, "barred", where),
                            wildcards=wildcards,
                            password=_string(entry, "password", where))


def _no_shared_identities(subscribers: tuple[SubscriberConfig, ...]):
    owner: dict[str, str] = {}
    for i, sub in enumerate(subscribers):
        for identity in (sub.impi, *sub.impus, *sub.barred, *sub.wildcards):
            if owner.setdefault(identity, sub.impi) != sub.impi:
                raise HssConfigError(f"subscriber[{i}]: {identity} already belongs to "
                                     f"{owner[identity]}")


def _charging(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise HssConfigError("charging_information: expected a table")
    _no_unknown_keys(value, CHARGING_INFORMATION_KEYS, "charging_information")
    return {key: _string(value, key, "charging_information") for key in value}


def _no_unknown_keys(table: dict, known: set | frozenset, where: str):
    for key in table:
        if key not in known:
            raise HssConfigError(f"{_path(where, key)}: unknown key "
                                 f"(expected one of {', '.join(sorted(known))})")


def _string(table: dict, key: str, where: str, *, required: bool = False,
            default: str | None = None) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise HssConfigError(f"{_path(where, key)}: missing")
        return default
    if not isinstance(value, str) or not value:
        raise HssConfigError(f"{_path(where, key)}: expected a non-empty string")
    return value


def _strings(table: dict, key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise HssConfigError(f"{_path(where, key)}: expected a list of non-empty strings")
    return tuple(value)


def split_host_port(address: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" into its parts."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
