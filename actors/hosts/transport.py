"""SipTransport: the Ray-hosted shell of a TransportCore (transport_core.py).

It binds the SIP sockets, gives the core its Ray-backed I/O (shard calls, responses forwarded
to other transports) and runs the core's timers on the event loop. Several transports per node
bind the same port (SO_REUSEPORT). ``ray.remote`` is applied where transports are created
(actors/ops/nodes.py).

The sockets are bound by the constructor, not by a call of the driver: Ray replays only the
constructor when it restarts a transport that died, and the transport must listen again then.
"""
from __future__ import annotations

import asyncio
import logging
import math

import ray

from actors.config import Config, parse_listen
from actors.hosts.loop_timer import LoopTimer
from actors.hosts.overload import OverloadGate
from actors.hosts.rate_limit import SourceRateLimit
from actors.hosts.ray_channels import ChannelDirectory
from actors.hosts.restarts import restarts
from actors.hosts.transport_core import TransportCore
from actors.vocabulary import NotifyJob, shard_name
from transport.sip import endpoints
from transport.sip.parser import parse_message

log = logging.getLogger(__name__)

# Timers of one transport fire at most this often (seconds): at thousands of REGISTERs a second
# each Timer J would otherwise be a wake-up of its own.
TIMER_RESOLUTION = 0.01


class SipTransport:
    def __init__(self, config: Config, listen: list[str] | None = None) -> None:
        self.config = config
        self.listen = listen or config.sip.listen
        self.namespace = config.ray.namespace
        self.endpoints: list = []
        self._handles: dict[str, object] = {}  # actor name -> handle, looked up once
        self._channels = ChannelDirectory(config)
        self._timer = LoopTimer(self._fire)
        self._polls: set[asyncio.Task] = set()  # held here: the loop keeps only weak references
        self.core = TransportCore(
            name=ray.get_runtime_context().get_actor_name() or "sip-transport",
            shards=config.ray.shards,
            t1=config.sip.t1,
            max_in_flight=config.sip.max_in_flight,
            rate_limit=rate_limit(config),
            overload=OverloadGate(config.sip.overload_delay) if config.sip.overload_delay else None,
            unanswered_retransmits=config.sip.notify_unanswered_retransmits,
            udp_mtu=config.sip.udp_mtu,
            call_shard=self._call_shard,
            forward_response=self._forward_response,
            clock=asyncio.get_running_loop().time,  # the actor's loop, looked up once
            arm=self._timer.fire_by,
        )
        self._channel = self._channels.serve({"send_notifies": self.core.send_notifies})
        self._bound = asyncio.get_running_loop().create_task(self._bind())
        self.restarts = restarts()
        if self.restarts:
            self._bound.add_done_callback(self._report_restart)

    async def channel_address(self) -> tuple[str, int]:
        return await self._channel.address()

    async def start(self) -> list[str]:
        """The listeners as 'udp:host:port' once each accepts traffic; raises what binding them
        raised (an address in use)."""
        return await self._bound

    async def listening(self) -> list[str]:
        """The listeners bound so far: none while binding or when it failed."""
        bound = self._bound
        ok = bound.done() and not bound.cancelled() and bound.exception() is None
        return bound.result() if ok else []

    async def _bind(self) -> list[str]:
        bound = []
        for spec in self.listen:
            proto, host, port = parse_listen(spec)
            if proto == "udp":  # one P-CSCF's datagrams go to every transport of the node
                endpoint = await endpoints.start_udp(
                    host, port, self.core.on_message, spread=self.config.ray.transports_per_node,
                    receive_buffer=self.config.sip.udp_receive_buffer,
                    stale_after=stale_after(self.config), on_bytes=self.core.refuse_unparsed)
            else:  # a TCP connection stays with the transport that accepted it
                endpoint = await endpoints.start_tcp(host, port, self.core.on_message,
                                                     limits=tcp_limits(self.config),
                                                     on_bytes=self.core.refuse_unparsed)
            self.endpoints.append(endpoint)
            self.core.add_endpoint(proto, endpoint)
            bound.append(f"{proto}:{host}:{endpoint.port}")
        return bound

    def _report_restart(self, bound: asyncio.Task) -> None:
        if bound.cancelled():
            return
        if bound.exception() is not None:
            log.error("%s restarted by Ray (restart %d), but its listeners could not be bound: %s",
                      self.core.name, self.restarts, bound.exception())
        else:
            log.warning("%s restarted by Ray (restart %d): SIP on %s again", self.core.name,
                        self.restarts, " ".join(bound.result()))

    async def stop(self) -> None:
        self._bound.cancel()
        self._timer.cancel()
        for endpoint in self.endpoints:
            endpoint.close()
        self.endpoints.clear()
        if self._channel is not None:
            self._channel.close()

    async def send_notifies(self, jobs: list[NotifyJob]) -> list[int]:
        return await self.core.send_notifies(jobs)

    async def reshard(self, shards: int) -> None:
        """The shards were started anew, ``shards`` of them: route onto those. Told again
        after every look at the nodes, so that a transport Ray restarted learns it too."""
        if shards == self.core.shards:
            return
        for index in range(max(self.core.shards, shards)):  # the old ones are gone
            self._handles.pop(shard_name(index), None)
        self.core.reshard(shards)

    async def shard_moved(self, index: int) -> None:
        """The shard was started anew elsewhere: the next call looks its name up again."""
        self._handles.pop(shard_name(index), None)

    async def take_response(self, data: bytes) -> None:
        """A response to one of our NOTIFYs that reached another transport first."""
        await self.core.on_response(parse_message(data))

    # -- The core's I/O

    async def _call_shard(self, index: int, method: str, items: list) -> list:
        channel = self._channels.client(shard_name(index))
        if channel is not None:
            return await channel.call(method, items)
        return await self._call(shard_name(index), method, items)

    async def _forward_response(self, owner: str, data: bytes) -> None:
        await self._call(owner, "take_response", data)

    async def _call(self, name: str, method: str, argument):
        """Calls the named actor; after a failure (restarting, moved to another node, gone)
        the next call looks it up by name again."""
        handle = await self._handle(name)
        try:
            return await getattr(handle, method).remote(argument)
        except Exception:
            if self._handles.get(name) is handle:
                del self._handles[name]
            raise

    async def _handle(self, name: str):
        handle = self._handles.get(name)
        if handle is None:  # ray.get_actor blocks on the GCS: not on the event loop
            handle = await asyncio.to_thread(ray.get_actor, name, namespace=self.namespace)
            self._handles[name] = handle
        return handle

    # -- The core's timers: one loop.call_at at the earliest deadline

    def _fire(self) -> None:
        task = asyncio.get_running_loop().create_task(self._poll())
        self._polls.add(task)
        task.add_done_callback(self._polls.discard)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self.core.poll(loop.time())
        except Exception:
            log.exception("transport timers failed")
        deadline = self.core.next_deadline()
        if deadline is not None and self.endpoints:
            self._timer.fire_by(max(deadline, loop.time() + TIMER_RESOLUTION))


def rate_limit(config: Config) -> SourceRateLimit | None:
    """The [sip] pike_* bound on each source's requests; None when both densities are 0."""
    sip = config.sip
    if not (sip.pike_reqs_density_per_sec or sip.pike_drop_density_per_sec):
        return None
    return SourceRateLimit(sip.pike_reqs_density_per_sec, sip.pike_sampling_time_unit,
                           sip.pike_drop_density_per_sec, sip.pike_trusted)


def stale_after(config: Config) -> float:
    """Seconds in the kernel's queue after which a UDP request is dropped unread: by T1 its
    sender has sent it again. Only with overload shedding on ([sip] overload_delay)."""
    sip = config.sip
    return max(sip.t1, sip.overload_delay) if sip.overload_delay else math.inf


def tcp_limits(config: Config) -> endpoints.TcpLimits:
    sip = config.sip
    return endpoints.TcpLimits(max_connections=sip.tcp_max_connections,
                               max_per_source=sip.tcp_max_connections_per_source,
                               idle_timeout=sip.tcp_connection_lifetime,
                               write_buffer=sip.tcp_conn_wq_max,
                               connect_timeout=sip.tcp_connect_timeout)
