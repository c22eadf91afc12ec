"""Channels between actors (actors/hosts/channels.py) over real loopback sockets, without Ray."""
import asyncio

import pytest

from actors.hosts.channels import ChannelClient, ChannelError, ChannelServer
from actors.vocabulary import Reply

SECRET = bytes(range(32))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Callee:
    """Batch methods as a shard's: one that answers, one that fails, one that waits."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls: list[list] = []

    async def double(self, items: list) -> list:
        self.calls.append(items)
        return [Reply(200, "OK", [("N", str(2 * i))]) for i in items]

    async def fail(self, items: list) -> list:
        raise RuntimeError("store down")

    async def slow(self, items: list) -> list:
        await self.release.wait()
        return items

    def server(self, secret: bytes = SECRET) -> ChannelServer:
        return ChannelServer({"double": self.double, "fail": self.fail, "slow": self.slow},
                             secret, "127.0.0.1")


def client_of(server: ChannelServer, secret: bytes = SECRET) -> tuple[ChannelClient, list]:
    resolved = []

    async def resolve():
        resolved.append(await server.address())
        return resolved[-1]
    return ChannelClient("shard-0", resolve, secret), resolved


def test_calls_carry_their_items_and_answers_in_order_of_the_items():
    async def scenario():
        callee = Callee()
        client, resolved = client_of(callee.server())
        first = await client.call("double", [1, 2, 3])
        second = await client.call("double", [])
        return callee.calls, first, second, len(resolved)

    calls, first, second, lookups = run(scenario())
    assert calls == [[1, 2, 3], []]
    assert [r.headers for r in first] == [[("N", "2")], [("N", "4")], [("N", "6")]]
    assert second == [] and lookups == 1  # one connection for every call


def test_calls_in_flight_are_answered_as_they_finish_not_in_order():
    async def scenario():
        callee = Callee()
        client, _ = client_of(callee.server())
        slow = asyncio.ensure_future(client.call("slow", ["a"]))
        await asyncio.sleep(0.05)
        quick = await client.call("double", [5])  # not held up by the slow one before it
        done_before = slow.done()
        callee.release.set()
        return quick, done_before, await slow

    quick, done_before, slow = run(scenario())
    assert quick[0].headers == [("N", "10")] and not done_before and slow == ["a"]


def test_a_failing_method_fails_that_call_only():
    async def scenario():
        client, _ = client_of(Callee().server())
        with pytest.raises(ChannelError, match="fail: RuntimeError: store down"):
            await client.call("fail", [1])
        return await client.call("double", [1])

    assert run(scenario())[0].headers == [("N", "2")]


def test_a_caller_without_the_secret_is_refused_before_anything_is_unpickled():
    async def scenario():
        callee = Callee()
        client, _ = client_of(callee.server(), secret=bytes(32))
        with pytest.raises(ChannelError, match="lost"):
            await client.call("double", [1])
        return callee.calls

    assert run(scenario()) == []


def test_a_lost_channel_fails_its_calls_in_flight_and_the_next_call_finds_the_callee_again():
    async def scenario():
        old = Callee()
        old_server = old.server()
        current = {"server": old_server}

        async def resolve():
            return await current["server"].address()
        client = ChannelClient("shard-0", resolve, SECRET)
        await client.call("double", [1])
        in_flight = asyncio.ensure_future(client.call("slow", ["x"]))
        await asyncio.sleep(0.05)
        current["server"] = Callee().server()  # the actor, restarted, listens elsewhere
        old_server.close()  # as its process ending: its connections go with it
        with pytest.raises(ChannelError, match="lost"):
            await in_flight
        return await client.call("double", [2])

    assert run(scenario())[0].headers == [("N", "4")]


def test_a_closed_server_gives_no_address():
    async def scenario():
        server = Callee().server()
        await server.address()
        server.close()
        with pytest.raises(ChannelError, match="closed"):
            await server.address()

    run(scenario())


def test_a_server_needs_a_secret():
    with pytest.raises(ValueError):
        ChannelServer({}, b"", "127.0.0.1")

