"""Registrar configuration: TOML sections validated into typed dataclasses.

Parameter names under ``[registrar]`` are those of Kamailio's ims_registrar_scscf module so that
an existing ``modparam`` list carries over one to one. Every error names the offending key.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the key."""


@dataclass
class SipConfig:
    listen: list[str] = field(default_factory=lambda: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
    domain: str = "ims.test"
    # RFC 3261 T1: NOTIFY retransmissions start here, Timer F is 64*T1; a UDP request that
    # waited longer in the kernel's queue has been sent again, and is dropped unread.
    t1: float = 0.5
    # Requests one transport may have waiting on the shards; more are answered 503 +
    # Retry-After at once rather than queued until the UE retransmits. 0: no bound (measured:
    # bounds of 64 and 256 lowered goodput at twice capacity; the queue is ahead of the shards).
    max_in_flight: int = 0
    # Seconds a new REGISTER/SUBSCRIBE/PUBLISH may be expected to wait, in the kernel's queue
    # and on the shards, before a transport answers it 503 + Retry-After at once instead
    # (actors/hosts/overload.py); below T1, so the UE hears before it retransmits. 0: off.
    overload_delay: float = 0.2
    # SO_RCVBUF of each UDP socket, bytes (the kernel caps it at net.core.rmem_max, with a
    # warning naming this key); 0: the system's (net.core.rmem_default, 208 KiB on Debian).
    # A queue that holds a burst lets it be shed with 503s instead of dropped and sent again:
    # twice capacity offered on a 2-core box, 4 MiB against 208 KiB gave 131 against 24,378
    # retransmissions. Requests older than T1 in it are dropped unread (UdpEndpoint), so a
    # transport too slow to answer them all still reaches the fresh ones.
    udp_receive_buffer: int = 4 * 2**20
    # Node name (`ray start --node-name`, by default the node's IP) -> listeners of the
    # transports on that node; nodes not named here use `listen`.
    listen_per_node: dict = field(default_factory=dict)
    # TCP bounds, under Kamailio's core names where it has them (see transport/sip/endpoints.py)
    tcp_max_connections: int = 2048
    tcp_max_connections_per_source: int = 64
    tcp_connection_lifetime: float = 600.0  # seconds without a byte received: closed
    tcp_conn_wq_max: int = 1048576  # unsent bytes to one peer before it is disconnected
    tcp_connect_timeout: float = 3.0  # seconds a connection we open for a NOTIFY may take
    # UDP retransmissions of a NOTIFY to a watcher that has never answered one (of RFC 3261's
    # ten): a spoofed SUBSCRIBE reflects at most 1 + this many NOTIFYs onto its victim.
    notify_unanswered_retransmits: int = 2
    # Bytes past which a NOTIFY goes over TCP and a binding query over UDP is answered 513
    # (RFC 3261 18.1.1; Kamailio's udp_mtu, there off by default); 0: no bound.
    udp_mtu: int = 1300
    # Requests per source address (Kamailio's pike; actors/hosts/rate_limit.py): above
    # pike_reqs_density_per_sec a second, averaged over pike_sampling_time_unit seconds, 503
    # with Retry-After; above pike_drop_density_per_sec dropped. Off (0) by default: an
    # S-CSCF's sources are P-CSCFs, each carrying every UE behind it, so no bound fits them
    # all; list them in pike_trusted and set a bound that fits one UE.
    pike_reqs_density_per_sec: int = 0
    pike_drop_density_per_sec: int = 0
    pike_sampling_time_unit: float = 2.0
    pike_trusted: list[str] = field(default_factory=list)  # addresses or networks (CIDR)


@dataclass
class RegistrarConfig:
    default_expires: int = 3600
    default_expires_range: int = 0
    min_expires: int = 60
    # A ceiling by default (the reference module has none): a binding asking for 136 years
    # gets two default periods, and is refreshed as often as a UE that asked for nothing.
    max_expires: int = 7200
    subscription_default_expires: int = 3600
    subscription_expires_range: int = 0
    subscription_min_expires: int = 10
    subscription_max_expires: int = 1000000
    user_data_dtd: str = ""
    user_data_xsd: str = ""
    support_wildcardPSI: int = 0
    scscf_name: str = ""
    store_profile_dereg: int = 0
    cxdx_dest_realm: str = ""
    cxdx_forced_peer: str = ""
    append_branches: int = 0
    method_filtering: int = 0
    user_data_always: int = 0
    # Ours, beyond the reference module:
    max_contacts: int = 20  # per IMPU; 0 = unlimited (one REGISTER could bring thousands)
    max_contacts_policy: str = "reject"  # or "replace_oldest"
    path_strict: bool = False  # 420 when Path arrives without "Supported: path"
    unreg_validity: int = 1800  # seconds an identity stays UNREGISTERED after assign_server_unreg
    # A re-REGISTER that changes nothing the HSS must learn sends no SAR while the last one is
    # younger than this (Clearwater's hss_reregistration_time); 0: every time, as Kamailio.
    sar_reregistration_interval: int = 1800
    # 1: a REGISTER to each application server whose iFC matches a registration, refresh or
    # de-registration (TS 24.229 5.4.1.7; Kamailio's ims_isc); 0: none.
    third_party_register: int = 1
    # Reg-event subscriptions (actors/reg_event/limits.py; the reference module has no bound):
    # per identity, and per watcher URI on one identity (every device of a user, by default
    # max_contacts of them, may hold one); 0 = unlimited.
    max_subscriptions_per_identity: int = 50
    max_subscriptions_per_watcher: int = 20


@dataclass
class AuthConfig:
    """Authentication of REGISTER (TS 24.229 5.4.1.2), under the names of Kamailio's ims_auth."""

    enabled: bool = True
    registration_default_algorithm: str = "AKAv1-MD5"  # or "MD5", or "HSS-Selected"
    auth_data_timeout: int = 60  # seconds a challenge waits for the UE's answer
    max_nonce_reuse: int = 0  # further REGISTERs a nonce may authorize (nc counting up)
    av_request_at_once: int = 1  # vectors per MAR; the spare ones serve later challenges
    ignore_failed_auth: int = 0  # 1: a wrong or stale answer is accepted (load tests only)
    registration_qop: str = "auth,auth-int"  # offered in challenges; "" offers none
    realm: str = ""  # default: sip.domain


ALGORITHMS = ("AKAv1-MD5", "MD5", "HSS-Selected")
QOPS = ("auth", "auth-int")
MAX_AV_REQUEST = 16


@dataclass
class CxConfig:
    peers: list[str] = field(default_factory=list)
    origin_host: str = "scscf.ims.test"
    origin_realm: str = "ims.test"
    request_timeout: float = 2.0
    watchdog_interval: float = 30.0
    # Bytes of User-Data a PPR may push; more is answered DIAMETER_ERROR_TOO_MUCH_DATA.
    max_user_data: int = 65536


@dataclass
class HssConfigSection:
    emulator: bool = True
    listen: str = "127.0.0.1:3868"
    subscribers: str = ""
    auto_provision_domain: str = ""
    admin_listen: str = ""  # HOST:PORT of the emulator's HTTP admin interface (SAR log, RTR/PPR)


@dataclass
class StoreConfig:
    backend: str = "sqlite"  # "sqlite" (one file per shard), "redis" (shared), "none"
    path: str = "scscf-data"  # SQLite: the data directory
    url: str = "redis://127.0.0.1:6379/0"  # Redis
    prefix: str = "scscf:"  # Redis key prefix, so deployments can share one server


@dataclass
class RpcConfig:
    listen: str = "127.0.0.1:5080"  # JSON-RPC over HTTP; "" switches it off
    # Callers send "Authorization: Bearer TOKEN": this token, or else the token file's, which
    # the first start creates (mode 0600); relative to the config file's directory.
    token: str = ""
    token_file: str = "rpc.token"
    require_token: bool = True  # false: anyone who reaches the listener may call it


@dataclass
class MetricsConfig:
    listen: str = "127.0.0.1:5081"  # /metrics (Prometheus), /health, /ready; "" switches it off


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


@dataclass
class LogConfig:
    level: str = "warning"  # every logger of every registrar process (driver and actors)
    modules: dict = field(default_factory=dict)  # logger name -> level, e.g. "actors.hosts"
    format: str = "text"  # or "json": one JSON object per line


@dataclass
class RayConfig:
    address: str = "local"
    namespace: str = "scscf"
    # ImpuShard actors. A shard is one event loop, so it uses at most one core, and every
    # process in a REGISTER's path costs CPU each time a batch wakes it: measured on 2 cores,
    # one shard took as many initial REGISTERs a second as two (4,600) for 13-18% less CPU.
    # More shards for more cores or nodes: about one per two CPUs.
    shards: int = 1
    transports_per_node: int = 1
    cx_pool: int = 1
    # The dashboard and metrics port of a local Ray; a cluster started by `ray start` has its own.
    dashboard: bool = True  # started unless its packages are missing (then a warning)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    metrics_export_port: int = 8080  # Ray's own Prometheus endpoint (its actors' metrics)
    # Nice value of the worker processes of a local Ray (RAY_worker_niceness; Ray's own default
    # is 15, which loses the CPU to sipp, the HSS and everything else at 0).
    worker_niceness: int = 0
    # The driver's event loop, and a local Ray's actors' (RAY_USE_UVLOOP; a cluster's nodes set
    # their own), on uvloop. Measured: 5% less CPU per REGISTER than asyncio's loop.
    uvloop: bool = True
    # Allocations between collections of Python's youngest generation in the registrar's
    # actors and its driver (Python's default 700; 0 leaves it). Measured: with the default,
    # a shard holding 20,000 identities spends 15-20% of its REGISTER CPU collecting.
    gc_threshold: int = 50000
    # Batches between the actors (REGISTERs, set updates, SARs, MARs, NOTIFYs) over direct
    # streams (actors/hosts/channels.py) instead of Ray calls, ~8x less CPU a call; false:
    # every call through Ray.
    direct_calls: bool = True
    # Hex secret those streams are opened with; empty: a random one made at each start.
    channel_secret: str = ""
    # Seconds between looks at the cluster's nodes: transports for nodes that joined, shards
    # moved to follow the nodes (with Redis).
    placement_interval: float = 2.0


@dataclass
class Config:
    sip: SipConfig = field(default_factory=SipConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    cx: CxConfig = field(default_factory=CxConfig)
    hss: HssConfigSection = field(default_factory=HssConfigSection)
    ray: RayConfig = field(default_factory=RayConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        # Derived defaults: the embedded HSS serves the SIP domain, and SAR names this S-CSCF.
        if not self.hss.auto_provision_domain and self.hss.emulator:
            self.hss.auto_provision_domain = self.sip.domain
        if self.hss.emulator and not self.cx.peers:
            self.cx.peers = [self.hss.listen]
        if not self.registrar.scscf_name:
            self.registrar.scscf_name = f"sip:scscf.{self.sip.domain}:{first_port(self.sip.listen)}"
        if not self.registrar.cxdx_dest_realm:
            self.registrar.cxdx_dest_realm = self.sip.domain
        if not self.auth.realm:
            self.auth.realm = self.sip.domain
        # Actors run in other working directories: the data directory is fixed here.
        self.store.path = str(Path(self.store.path).resolve())
        validate(self)


_SECTIONS = {
    "sip": SipConfig,
    "registrar": RegistrarConfig,
    "auth": AuthConfig,
    "cx": CxConfig,
    "hss": HssConfigSection,
    "ray": RayConfig,
    "store": StoreConfig,
    "rpc": RpcConfig,
    "metrics": MetricsConfig,
    "log": LogConfig,
}


def load_config(path: str | Path | None) -> Config:
    """Reads a TOML file (or nothing: the embedded defaults) into a validated Config."""
    if path is None:
        return Config()
    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    config = config_from_dict(raw)
    # The server and `scscf rpc` find the same token file from wherever they run.
    config.rpc.token_file = str(Path(path).resolve().parent / config.rpc.token_file)
    return config


def config_from_dict(raw: dict[str, Any]) -> Config:
    sections = {}
    for name, value in raw.items():
        if name not in _SECTIONS:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _section(name, _SECTIONS[name], value)
    return Config(**sections)


def _section(name: str, cls: type, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown key {name}.{key}")
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}.{key} must be a list of strings")
        elif type(value) is not expected:
            raise ConfigError(
                f"{name}.{key} must be {expected.__name__}, not {type(value).__name__}"
            )
        kwargs[key] = value
    return cls(**kwargs)


def parse_listen(spec: str, key: str = "sip.listen") -> tuple[str, str, int]:
    """'udp:127.0.0.1:5060' -> ('udp', '127.0.0.1', 5060)."""
    parts = spec.split(":")
    if len(parts) < 3 or parts[0] not in ("udp", "tcp"):
        raise ConfigError(f"{key}: {spec!r} is not 'udp:HOST:PORT' or 'tcp:HOST:PORT'")
    host = ":".join(parts[1:-1]).strip("[]")
    return parts[0], host, _port(parts[-1], key, spec)


def parse_host_port(spec: str, key: str) -> tuple[str, int]:
    """'127.0.0.1:3868' -> ('127.0.0.1', 3868)."""
    host, sep, port = spec.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{key}: {spec!r} is not 'HOST:PORT'")
    return host.strip("[]"), _port(port, key, spec)


def _port(text: str, key: str, spec: str) -> int:
    # isascii: "²".isdigit() is True, though int() refuses it
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise ConfigError(f"{key}: {spec!r} has no valid port")
    return int(text)


def cx_origin_host(cx: CxConfig, index: int) -> str:
    """The Origin-Host of Cx pool actor ``index``: each has its own Diameter connections, and
    an HSS or DRA refuses a second connection under a name already connected. Pool 0 is
    ``cx.origin_host``; pool i inserts ``-i`` after its first label (scscf-1.ims.test)."""
    if index == 0:
        return cx.origin_host
    first, dot, rest = cx.origin_host.partition(".")
    return f"{first}-{index}{dot}{rest}"


def first_port(listen: list[str]) -> int:
    return parse_listen(listen[0])[2] if listen else 5060


def validate(config: Config) -> None:
    reg = config.registrar
    if not config.sip.listen:
        raise ConfigError("sip.listen must name at least one listener")
    for spec in config.sip.listen:
        parse_listen(spec)
    for node, specs in config.sip.listen_per_node.items():
        key = f"sip.listen_per_node.{node}"
        if not specs or not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            raise ConfigError(f"{key} must be a non-empty list of strings")
        for spec in specs:
            parse_listen(spec, key)
    if config.rpc.listen:
        parse_host_port(config.rpc.listen, "rpc.listen")
    if config.metrics.listen:
        parse_host_port(config.metrics.listen, "metrics.listen")
    for key in ("dashboard_port", "metrics_export_port"):
        if not 1 <= getattr(config.ray, key) <= 65535:
            raise ConfigError(f"ray.{key} must be a port between 1 and 65535")
    if any(c.isspace() for c in config.rpc.token):
        raise ConfigError("rpc.token must not contain white space")
    if config.rpc.require_token and not (config.rpc.token or config.rpc.token_file.strip()):
        raise ConfigError("rpc.token_file must not be empty when rpc.token is not given")
    if reg.unreg_validity < 1:
        raise ConfigError("registrar.unreg_validity must be at least 1 second")
    if reg.sar_reregistration_interval < 0:
        raise ConfigError("registrar.sar_reregistration_interval must not be negative")
    if config.sip.max_in_flight < 0:
        raise ConfigError("sip.max_in_flight must not be negative")
    if config.sip.udp_receive_buffer < 0:
        raise ConfigError("sip.udp_receive_buffer must not be negative")
    _validate_pike(config.sip)
    if not 0 <= config.sip.notify_unanswered_retransmits <= 10:
        raise ConfigError("sip.notify_unanswered_retransmits must be between 0 and 10")
    if config.sip.udp_mtu and not 512 <= config.sip.udp_mtu <= 65507:
        raise ConfigError("sip.udp_mtu must be 0 (no bound) or between 512 and 65507")
    if not 0 <= config.ray.worker_niceness <= 19:
        raise ConfigError("ray.worker_niceness must be between 0 and 19")
    if config.ray.gc_threshold < 0:
        raise ConfigError("ray.gc_threshold must not be negative")
    if config.ray.channel_secret:
        try:
            secret = bytes.fromhex(config.ray.channel_secret)
        except ValueError:
            secret = b""
        if len(secret) < 16:
            raise ConfigError("ray.channel_secret must be at least 32 hex digits")
    if config.ray.placement_interval <= 0:
        raise ConfigError("ray.placement_interval must be positive")
    for spec in config.cx.peers:
        parse_host_port(spec, "cx.peers")
    parse_host_port(config.hss.listen, "hss.listen")
    if config.hss.admin_listen:
        parse_host_port(config.hss.admin_listen, "hss.admin_listen")
    if not config.cx.peers:
        raise ConfigError("cx.peers is empty and hss.emulator is false: no HSS to talk to")
    for key in ("default_expires_range", "subscription_expires_range"):
        if not 0 <= getattr(reg, key) <= 100:
            raise ConfigError(f"registrar.{key} must be between 0 and 100")
    for key in (
        "default_expires", "min_expires", "max_expires", "subscription_default_expires",
        "subscription_min_expires", "subscription_max_expires", "max_contacts",
        "max_subscriptions_per_identity", "max_subscriptions_per_watcher",
    ):
        if getattr(reg, key) < 0:
            raise ConfigError(f"registrar.{key} must not be negative")
    if reg.max_contacts_policy not in ("reject", "replace_oldest"):
        raise ConfigError("registrar.max_contacts_policy must be 'reject' or 'replace_oldest'")
    if not reg.scscf_name.startswith(("sip:", "sips:")):
        raise ConfigError("registrar.scscf_name must be a SIP URI (sip:scscf.example:5060)")
    for key in ("shards", "transports_per_node", "cx_pool"):
        if getattr(config.ray, key) < 1:
            raise ConfigError(f"ray.{key} must be at least 1")
    if config.store.backend not in ("sqlite", "redis", "none"):
        raise ConfigError("store.backend must be 'sqlite', 'redis' or 'none'")
    if config.cx.request_timeout <= 0:
        raise ConfigError("cx.request_timeout must be positive")
    _validate_ranges(config)
    _validate_auth(config.auth)
    _validate_log(config.log)


def _validate_pike(sip: SipConfig) -> None:
    for key in ("pike_reqs_density_per_sec", "pike_drop_density_per_sec"):
        if getattr(sip, key) < 0:
            raise ConfigError(f"sip.{key} must not be negative")
    if 0 < sip.pike_drop_density_per_sec < sip.pike_reqs_density_per_sec:
        raise ConfigError("sip.pike_drop_density_per_sec must not be below "
                          "sip.pike_reqs_density_per_sec")
    for network in sip.pike_trusted:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"sip.pike_trusted: {network!r} is not an address or network "
                              f"(10.0.0.1, 10.0.0.0/24)") from None


def _validate_log(log: LogConfig) -> None:
    if log.level not in LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}")
    for name, level in log.modules.items():
        if level not in LOG_LEVELS:
            raise ConfigError(f"log.modules.{name} must be one of {', '.join(LOG_LEVELS)}")
    if log.format not in LOG_FORMATS:
        raise ConfigError(f"log.format must be one of {', '.join(LOG_FORMATS)}")


# Durations that must be finite and above zero (TOML has nan and inf; 0 would spin timers).
_POSITIVE_SECONDS = ("sip.t1", "sip.tcp_connection_lifetime", "cx.request_timeout",
                     "cx.watchdog_interval", "sip.pike_sampling_time_unit",
                     "sip.tcp_connect_timeout")
_AT_LEAST_ONE = ("sip.tcp_max_connections", "sip.tcp_max_connections_per_source",
                 "sip.tcp_conn_wq_max", "cx.max_user_data")
_NON_EMPTY = ("sip.domain", "cx.origin_host", "cx.origin_realm", "ray.namespace", "store.path",
              "ray.dashboard_host")
_FLAGS = ("registrar.support_wildcardPSI", "registrar.store_profile_dereg",
          "registrar.append_branches", "registrar.method_filtering", "registrar.user_data_always",
          "registrar.third_party_register")
_FILES = ("registrar.user_data_xsd", "registrar.user_data_dtd", "hss.subscribers")


def _value(config: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def _validate_ranges(config: Config) -> None:
    """What the type check lets through but no registrar can run with."""
    for key in _POSITIVE_SECONDS:
        if not 0 < _value(config, key) < math.inf:  # also false for nan
            raise ConfigError(f"{key} must be a positive number of seconds")
    if not 0 <= config.sip.overload_delay < math.inf:
        raise ConfigError("sip.overload_delay must be 0 (off) or a number of seconds")
    for key in _AT_LEAST_ONE:
        if _value(config, key) < 1:
            raise ConfigError(f"{key} must be at least 1")
    for key in _NON_EMPTY:
        if not _value(config, key).strip():
            raise ConfigError(f"{key} must not be empty")
    for key in _FLAGS:
        if _value(config, key) not in (0, 1):
            raise ConfigError(f"{key} must be 0 or 1")
    for key in _FILES:
        if _value(config, key) and not Path(_value(config, key)).is_file():
            raise ConfigError(f"{key}: no such file {_value(config, key)!r}")
    reg = config.registrar
    if reg.default_expires < 1 or reg.subscription_default_expires < 1:
        key = "default_expires" if reg.default_expires < 1 else "subscription_default_expires"
        raise ConfigError(f"registrar.{key} must be at least 1 second")
    for low, high in (("min_expires", "max_expires"),
                      ("subscription_min_expires", "subscription_max_expires")):
        if getattr(reg, high) and getattr(reg, low) > getattr(reg, high):
            raise ConfigError(f"registrar.{low} must not exceed registrar.{high}")


def _validate_auth(auth: AuthConfig) -> None:
    if auth.registration_default_algorithm not in ALGORITHMS:
        raise ConfigError(f"auth.registration_default_algorithm must be one of "
                          f"{', '.join(ALGORITHMS)}")
    if auth.auth_data_timeout < 1:
        raise ConfigError("auth.auth_data_timeout must be at least 1 second")
    if auth.max_nonce_reuse < 0:
        raise ConfigError("auth.max_nonce_reuse must not be negative")
    if not 1 <= auth.av_request_at_once <= MAX_AV_REQUEST:
        raise ConfigError(f"auth.av_request_at_once must be between 1 and {MAX_AV_REQUEST}")
    if auth.ignore_failed_auth not in (0, 1):
        raise ConfigError("auth.ignore_failed_auth must be 0 or 1")
    offered = [qop.strip() for qop in auth.registration_qop.split(",")]
    if auth.registration_qop.strip() and not all(qop in QOPS for qop in offered):
        raise ConfigError("auth.registration_qop must list auth and/or auth-int, or be empty")
    if not auth.realm or any(c in auth.realm for c in '"\\\r\n'):
        raise ConfigError("auth.realm must be a non-empty domain without quotes")
