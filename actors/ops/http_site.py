"""An aiohttp application served on a ``HOST:PORT`` of the configuration: the base of the
JSON-RPC server and of the metrics and health server."""
from __future__ import annotations

from aiohttp import web

from actors.config import parse_host_port


class HttpSite:
    def __init__(self, app: web.Application, key: str) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._key = key  # the config key of the address, for its errors
        self.url = ""

    async def start(self, listen: str) -> str:
        """Listens on ``listen``; returns the URL (the port bound when ``listen`` says 0)."""
        host, port = parse_host_port(listen, self._key)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        await self._runner.cleanup()
