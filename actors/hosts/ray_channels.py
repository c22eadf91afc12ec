"""Channels (channels.py) between the registrar's Ray actors: each shell serves its batch
methods on one and reaches its peers' through ``ChannelDirectory``."""
from __future__ import annotations

import asyncio

import ray

from actors.config import Config
from actors.hosts.channels import ChannelClient, ChannelServer, Method


def channel_host(config: Config) -> str:
    """A local Ray's actors all run on this machine: loopback. A cluster's: the node's
    address, which the other nodes reach."""
    return "127.0.0.1" if config.ray.address == "local" else ray.util.get_node_ip_address()


class ChannelDirectory:
    """An actor's channels: the one it serves and one client per callee, by actor name. With
    direct calls off (or no secret) there are none, and callers use Ray calls."""

    def __init__(self, config: Config) -> None:
        self._namespace = config.ray.namespace
        self._secret = bytes.fromhex(config.ray.channel_secret)
        self._enabled = config.ray.direct_calls and bool(self._secret)
        self._host = channel_host(config) if self._enabled else ""
        self._clients: dict[str, ChannelClient] = {}

    def serve(self, methods: dict[str, Method]) -> ChannelServer | None:
        return ChannelServer(methods, self._secret, self._host) if self._enabled else None

    def client(self, name: str) -> ChannelClient | None:
        if not self._enabled:
            return None
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = ChannelClient(
                name, lambda: self._address(name), self._secret)
        return client

    async def _address(self, name: str) -> tuple[str, int]:
        # looked up afresh each time: a restarted or moved actor listens elsewhere
        handle = await asyncio.to_thread(ray.get_actor, name, namespace=self._namespace)
        return tuple(await handle.channel_address.remote())
