"""``Registrar``: the terminating functions of ims_registrar_scscf, for any Ray driver or actor.

Kamailio's names and return codes, as coroutines. The shards are found by name in the
registrar's namespace; identity look-ups ride batched calls, as REGISTERs do. Create one where
it is used (it holds actor handles and its ``profiles``), from the registrar's Config.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import ray

from actors.config import Config
from actors.hosts.batching import Batcher
from actors.hosts.metrics import statistics, summed, with_aliases
from actors.ops.off_loop import off_loop
from actors.ops.resets import Baselines
from actors.rules.lookup import bare_uri, canonical_contact, contact_fields, lookup, registered
from actors.rules.routing import SLOTS, jump_hash, shard_of
from actors.vocabulary import (
    FOUND,
    INTERNAL_ERROR,
    NOT_FOUND,
    Deregistration,
    ImpuView,
    Target,
    cx_pool_name,
    shard_name,
    transport_name,
)
from transport.sip.errors import SipParseError
from transport.sip.headers import parse_name_addr
from transport.sip.message import Request

log = logging.getLogger(__name__)

DIRECTIONS = ("orig", "term")


def identity_of(request_or_uri: Request | str, where: str = "term") -> str:
    """The canonical IMPU of a URI, or of a request: its Request-URI (``term``), To (``to``),
    or for ``orig`` the P-Asserted-Identity, else From."""
    if not isinstance(request_or_uri, Request):
        return bare_uri(str(request_or_uri)).aor()
    request = request_or_uri
    if where == "to":
        return request.to.uri.aor()
    if where == "orig":
        asserted = request.headers.get_all("P-Asserted-Identity")
        return (parse_name_addr(asserted[0]).uri if asserted else request.from_.uri).aor()
    return request.request_uri.aor()


class Registrar:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.namespace = config.ray.namespace
        self.append_branches = bool(config.registrar.append_branches)
        self.method_filtering = bool(config.registrar.method_filtering)
        self.profiles: dict[str, dict] = {}  # reg_fetch_contacts: what $imssulc(profile) reads
        self._handles: dict[int, ray.actor.ActorHandle] = {}
        self._views: dict[int, Batcher] = {}
        self._baselines = Baselines()  # stats.reset_statistics, for this handle's reads

    @property
    def shards(self) -> int:
        """Read from the config each time: the registrar's own handle follows a resize."""
        return self.config.ray.shards

    # -- Kamailio's functions -----------------------------------------------------------------

    async def lookup(self, request_or_uri: Request | str,
                     method: str | None = None) -> tuple[int, list[Target]]:
        """1 and the targets (the first is the Request-URI, the rest branches when
        ``append_branches``), -1 not registered, -2 no contact allows the method, -3 error."""
        if method is None and isinstance(request_or_uri, Request):
            method = request_or_uri.method

        async def find():
            v = await self._view(identity_of(request_or_uri))
            return lookup(v, method, self.append_branches, self.method_filtering)
        return await _safely(find, (INTERNAL_ERROR, []))

    async def lookup_path_to_contact(self, uri: str) -> tuple[int, list[str]]:
        """1 and the Path the contact registered with (the route towards it), or -1. Contacts
        are not indexed by URI: every shard scans its identities."""
        async def find():
            contact = canonical_contact(uri)
            found = await asyncio.gather(
                *(self._on_shard(i, "find_contact", contact) for i in range(self.shards)))
            binding = next((b for b in found if b is not None), None)
            return (FOUND, list(binding.path)) if binding else (NOT_FOUND, [])
        return await _safely(find, (NOT_FOUND, []))

    async def unregister(self, request_or_uri: Request | str) -> int:
        """Removes every binding of the identity and its implicit set (SAR ADMINISTRATIVE_
        DEREGISTRATION): 1, or -1 when it was not registered, -3 on error."""
        async def remove():
            return (await self._unregister(identity_of(request_or_uri))).code
        return await _safely(remove, INTERNAL_ERROR)

    async def assign_server_unreg(self, request_or_uri: Request | str,
                                  direction: str = "term") -> int:
        """SAR UNREGISTERED_USER for a request to (``term``) or from (``orig``) an identity that
        is not registered; it stays UNREGISTERED for ``unreg_validity``. 1, -1 refused, -3."""
        if direction not in DIRECTIONS:
            log.warning("assign_server_unreg: direction %r is not orig or term", direction)
            return INTERNAL_ERROR

        async def assign():
            identity = identity_of(request_or_uri, direction)
            return await self._on_shard_of(identity, "assign_server_unreg", identity)
        return await _safely(assign, INTERNAL_ERROR)

    async def impu_registered(self, request_or_uri: Request | str) -> int:
        """1 when the identity of the To header (or the URI given) is registered, else -1."""
        return await self._registered(request_or_uri, "to")

    async def term_impu_registered(self, request_or_uri: Request | str) -> int:
        """1 when the identity of the Request-URI (or the URI given) is registered, else -1."""
        return await self._registered(request_or_uri, "term")

    async def reg_fetch_contacts(self, request_or_uri: Request | str, profile: str) -> int:
        """Fills ``profiles[profile]`` with the identity's contacts: 1, or -1 (profile empty)."""
        self.profiles.pop(profile, None)
        v = await _safely(lambda: self._view(identity_of(request_or_uri)), None)
        if v is None or registered(v) != FOUND:
            return NOT_FOUND
        self.profiles[profile] = {"aor": v.identity, "count": len(v.bindings),
                                  "contacts": [contact_fields(b) for b in v.bindings]}
        return FOUND

    async def reg_free_contacts(self, profile: str) -> int:
        self.profiles.pop(profile, None)
        return FOUND

    # -- Administration: what the JSON-RPC methods answer (errors raise) ---------------------

    async def status(self) -> dict:
        # Ray's control calls wait for the GCS (a minute when it is gone): off the loop.
        shards, peers, nodes = await asyncio.gather(self._statistics(), self.peers(),
                                                    off_loop(ray.nodes))
        names = {n["NodeID"]: n["NodeName"] for n in nodes}
        slots = Counter(jump_hash(s, self.shards) for s in range(SLOTS))
        return {
            "impus": sum(s["impus"] for s in shards),
            "contacts": sum(s["contacts"] for s in shards),
            "subscriptions": sum(s.get("subscriptions", 0) for s in shards),
            "slots": SLOTS,
            "nodes": [{"name": n["NodeName"], "node_id": n["NodeID"],
                       "address": n["NodeManagerAddress"], "alive": n["Alive"]} for n in nodes],
            "shards": [
                {"shard": i, "name": shard_name(i), "slots": slots[i],
                 "node": names.get(s["node_id"], ""), "node_id": s["node_id"],
                 "impus": s["impus"], "contacts": s["contacts"],
                 "load_error": s.get("load_error")}  # why it cannot serve yet; None: loaded
                for i, s in enumerate(shards)
            ],
            "transports": await self._transports([n for n in nodes if n["Alive"]]),
            "peers": peers,
        }

    async def peers(self) -> list[dict]:
        """Every HSS peer of every Cx pool (each pool has its own connections): the pool,
        the peer's address and state, and what it advertised."""
        pools = await asyncio.gather(*(
            self._actor(cx_pool_name(i)) for i in range(self.config.ray.cx_pool)))
        states = await asyncio.gather(*(pool.peers.remote() for pool in pools))
        return [{"pool": i, **peer} for i, pool_peers in enumerate(states) for peer in pool_peers]

    async def _transports(self, nodes: list[dict]) -> list[dict]:
        """The transports each alive node should run, and whether each does."""
        sip = self.config.sip
        wanted = [(node, transport_name(node["NodeName"], i))
                  for node in sorted(nodes, key=lambda n: n["NodeName"])
                  for i in range(self.config.ray.transports_per_node)]
        running = await asyncio.gather(*(self._running(name) for _, name in wanted))
        return [
            {"name": name, "node": node["NodeName"], "running": up,
             "listen": sip.listen_per_node.get(node["NodeName"], sip.listen)}
            for (node, name), up in zip(wanted, running)
        ]

    async def _running(self, actor: str) -> bool:
        try:
            await self._actor(actor)
        except ValueError:
            return False
        return True

    def _actor(self, name: str) -> Awaitable:
        return off_loop(ray.get_actor, name, self.namespace)

    async def show_impu(self, impu: str) -> dict:
        identity = identity_of(impu)
        shown = await self._on_shard_of(identity, "show", identity)
        return shown or {"identity": identity, "state": "NOT_REGISTERED", "contacts": [],
                         "associated": []}

    async def dereg_impu(self, impu: str) -> dict:
        identity = identity_of(impu)
        result = await self._unregister(identity)
        return {"identity": identity, "deregistered": result.code == FOUND,
                "removed_contacts": result.removed, "hss": result.hss}

    async def statistics(self) -> dict[str, int]:
        """Kamailio-named statistics summed over the shards, counters since the last reset."""
        return with_aliases(statistics(summed(self._baselines.apply(await self._statistics()))))

    async def reset_statistics(self, names: list[str]) -> list[str]:
        """Resets the counters among ``names`` (Kamailio names); returns those reset."""
        return self._baselines.reset(await self._statistics(), names)

    # -- Shards -------------------------------------------------------------------------------

    def forget_shards(self) -> None:
        """The shards were started anew (a resize): look every one up again."""
        self._handles.clear()

    def _shard(self, index: int):
        handle = self._handles.get(index)
        if handle is None:
            handle = ray.get_actor(shard_name(index), namespace=self.namespace)
            self._handles[index] = handle
        return handle

    async def _on_shard(self, index: int, method: str, *args):
        """Calls a shard; after a failure (restarting, moved to another node) the next call
        looks it up by name again."""
        handle = self._shard(index)
        try:
            return await getattr(handle, method).remote(*args)
        except Exception:
            if self._handles.get(index) is handle:
                del self._handles[index]
            raise

    async def _on_shard_of(self, identity: str, method: str, *args):
        return await self._on_shard(shard_of(identity, self.shards), method, *args)

    async def _view(self, identity: str) -> ImpuView:
        index = shard_of(identity, self.shards)
        batcher = self._views.get(index)
        if batcher is None:
            batcher = self._views[index] = Batcher(
                lambda ids: self._on_shard(index, "view_batch", ids))
        return await batcher.submit(identity)

    async def _registered(self, request_or_uri: Request | str, where: str) -> int:
        v = await _safely(lambda: self._view(identity_of(request_or_uri, where)), None)
        return registered(v) if v is not None else NOT_FOUND

    async def _unregister(self, identity: str) -> Deregistration:
        return await self._on_shard_of(identity, "unregister", identity)

    async def _statistics(self) -> list[dict]:
        return await asyncio.gather(*(self._on_shard(i, "statistics") for i in range(self.shards)))


async def _safely(action: Callable[[], Awaitable], failed):
    """Kamailio's functions answer a code, never raise: a bad URI or an unreachable shard is
    logged and answered ``failed``."""
    try:
        return await action()
    except SipParseError as exc:
        log.warning("not a usable URI: %s", exc.reason)
    except Exception:
        log.exception("registrar call failed")
    return failed
