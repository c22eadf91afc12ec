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
    application_servers = ["sip:as.ims.test:5065"]     # an initial filter criterion each
    password = "secret"                   # SIP Digest: HA1 = MD5(impi:realm:password)
    k = "465b5ce8b199b49faa5f0a2ee238a6bc"  # IMS AKA (Milenage): K, and OP or OPc, in hex
    op = "cdc202d5123e20f62b6d676ac72cb318"
    amf = "8000"                          # optional, hex
    sqn = 1                               # optional: the SQN of the next vector
    auth_scheme = "Digest-AKAv1-MD5"      # optional: the only scheme allowed ("SIP Digest",
                                          # "Digest-MD5"); by default any it has credentials
                                          # for, AKA first when a MAR leaves the choice

Auto-provisioned subscribers get the test credentials below: password "imstest" and the
K/OP of TS 35.208 test set 1, AMF 8000, SQN from 1.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field

from actors.auth.aka import SQN_LIMIT
from actors.auth.milenage import opc as derive_opc
from transport.diameter.cx_base import CHARGING_INFORMATION_KEYS
from transport.diameter.user_data import UserDataError, wildcard_regex


class HssConfigError(ValueError):
    """The configuration is malformed; the message names the offending key."""


AKA = "Digest-AKAv1-MD5"
SIP_DIGEST = "SIP Digest"
# Scheme names as configured or asked for in a MAR, lower-cased -> the scheme they mean.
SCHEME_NAMES = {"digest-akav1-md5": AKA, "sip digest": SIP_DIGEST, "digest-md5": SIP_DIGEST,
                "digest": SIP_DIGEST}

DEFAULT_SCSCF = "scscf.ims.test"  # the registrar's default [cx] origin_host
TEST_PASSWORD = "imstest"
TEST_K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")  # TS 35.208 4.3, test set 1
TEST_OP = bytes.fromhex("cdc202d5123e20f62b6d676ac72cb318")


@dataclass(frozen=True)
class AkaCredentials:
    """What the HSS shares with the USIM/ISIM for Milenage."""
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    amf: bytes = b"\x80\x00"
    sqn: int = 1  # the SQN of the first vector


TEST_AKA = AkaCredentials(TEST_K, derive_opc(TEST_K, TEST_OP))


@dataclass(frozen=True)
class SubscriberConfig:
    impi: str
    impus: tuple[str, ...]  # the implicit registration set, default IMPU first
    barred: tuple[str, ...] = ()
    wildcards: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    aka: AkaCredentials | None = None
    auth_scheme: str | None = None  # the only scheme allowed; None: any it has credentials for
    application_servers: tuple[str, ...] = ()  # ServerName of an iFC each, in priority order

    @classmethod
    def auto_provisioned(cls, impi: str, impus: tuple[str, ...]) -> SubscriberConfig:
        """A subscriber made up on first sight, with the documented test credentials."""
        return cls(impi, impus, password=TEST_PASSWORD, aka=TEST_AKA)

    @property
    def schemes(self) -> tuple[str, ...]:
        """The schemes it can authenticate with, the one a MAR's "Unknown" gets first."""
        if self.auth_scheme is not None:
            return (self.auth_scheme,)
        return ((AKA,) if self.aka else ()) + ((SIP_DIGEST,) if self.password else ())


@dataclass(frozen=True)
class HssConfig:
    origin_host: str = "hss.ims.test"
    origin_realm: str = "ims.test"
    auto_provision_domain: str | None = None
    admin_listen: str | None = None
    watchdog_interval: float = 30.0
    charging_information: dict | None = None
    subscribers: tuple[SubscriberConfig, ...] = ()
    # Origin-Hosts of the S-CSCFs whose CER is accepted; any other peer gets UNKNOWN_PEER.
    allowed_peers: tuple[str, ...] = (DEFAULT_SCSCF,)

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
             "watchdog_interval", "charging_information", "subscriber", "allowed_peers"}
_SUBSCRIBER_KEYS = {"impi", "impus", "barred", "wildcard", "application_servers", "password",
                    "k", "op", "opc", "amf", "sqn", "auth_scheme"}


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
        subscribers=subscribers,
        allowed_peers=_allowed_peers(table))


def _allowed_peers(table: dict) -> tuple[str, ...]:
    if "allowed_peers" not in table:
        return (DEFAULT_SCSCF,)
    peers = _strings(table, "allowed_peers", "")
    if not peers:
        raise HssConfigError("allowed_peers: expected a non-empty list of Origin-Hosts")
    return peers


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
    password = _string(entry, "password", where)
    aka = _aka(entry, where)
    scheme = _string(entry, "auth_scheme", where)
    if scheme is not None:
        if scheme.lower() not in SCHEME_NAMES:
            raise HssConfigError(f"{where}.auth_scheme: expected one of {AKA!r}, "
                                 f"{SIP_DIGEST!r}, 'Digest-MD5'")
        scheme = SCHEME_NAMES[scheme.lower()]
        if scheme == AKA and aka is None:
            raise HssConfigError(f"{where}.auth_scheme: {AKA} needs k and op (or opc)")
        if scheme == SIP_DIGEST and password is None:
            raise HssConfigError(f"{where}.auth_scheme: {SIP_DIGEST} needs a password")
    return SubscriberConfig(impi=impi, impus=impus, barred=_strings(entry, "barred", where),
                            wildcards=wildcards,
                            application_servers=_strings(entry, "application_servers", where),
                            password=password, aka=aka, auth_scheme=scheme)


def _aka(entry: dict, where: str) -> AkaCredentials | None:
    if "k" not in entry:
        for key in ("op", "opc", "amf", "sqn"):
            if key in entry:
                raise HssConfigError(f"{where}.{key}: only meaningful with k")
        return None
    k = _hex(entry, "k", where, 16)
    if ("op" in entry) == ("opc" in entry):
        raise HssConfigError(f"{where}.op: give exactly one of op and opc with k")
    opc = (_hex(entry, "opc", where, 16) if "opc" in entry
           else derive_opc(k, _hex(entry, "op", where, 16)))
    amf = _hex(entry, "amf", where, 2) if "amf" in entry else b"\x80\x00"
    sqn = entry.get("sqn", 1)
    if not isinstance(sqn, int) or isinstance(sqn, bool) or not 0 <= sqn < SQN_LIMIT:
        raise HssConfigError(f"{where}.sqn: expected an integer in [0, 2**48)")
    return AkaCredentials(k, opc, amf, sqn)


def _hex(table: dict, key: str, where: str, length: int) -> bytes:
    value = table[key]
    try:
        octets = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        octets = None
    if octets is None or len(octets) != length:
        raise HssConfigError(f"{_path(where, key)}: expected {2 * length} hex digits")
    return octets


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
