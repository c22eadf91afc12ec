"""The IMPU store on both backends: SQLite files and a real redis-server process."""
import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import fields
from pathlib import Path

import msgpack
import pytest
import redis

from actors.rules.impu import Impu
from actors.rules.routing import SLOTS, jump_hash, shard_of, slot_of
from actors.rules.save import profile_from_user_data
from actors.store.base import NullStore, WriteThrough, open_store
from actors.store.records import BINDING_FIELDS, RECORD_VERSION, decode_impu, encode_impu
from actors.store.redis_backend import RedisStore
from actors.vocabulary import Binding, Profile, RegState, StoreError
from scripts.harness import redis_server as redis_helper

REPO = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.25
NO_REDIS = "redis-server is not on PATH (Debian package redis-server)"
needs_redis_server = pytest.mark.skipif(not redis_helper.available(), reason=NO_REDIS)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def redis_server():
    if not redis_helper.available():
        pytest.skip(NO_REDIS)
    server = redis_helper.RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """Builds unopened stores of one backend that all see the same data (one shard's)."""
    if request.param == "sqlite":
        return lambda: open_store("sqlite", str(tmp_path), "", 0)
    url = request.getfixturevalue("redis_server").url
    prefix = f"test-{uuid.uuid4().hex}:"
    return lambda: open_store("redis", "", url, 0, prefix=prefix)


async def opened(make):
    store = make()
    await store.open()
    return store


async def load(store, slots) -> dict[str, bytes]:
    return {identity: data async for identity, data in store.load_slots(slots)}


def realistic_impu(identity: str) -> Impu:
    impu = Impu(identity)
    impu.state = RegState.REGISTERED
    for n, q in ((1, "0.7"), (2, None)):
        instance = f"<urn:gsma:imei:35209900-176148-{n}>"
        key = f"{instance};reg-id=1"
        impu.bindings[key] = Binding(
            uri=f"sip:{identity[4:].split('@')[0]}@10.0.0.{n}:5060;transport=tcp;ob",
            key=key,
            expires_at=NOW + 600 * n + 0.125,
            q=q,
            instance=instance,
            reg_id=1,
            params=(("+sip.instance", f'"{instance}"'), ("reg-id", "1"), ("+g.3gpp.smsip", None)),
            call_id=f"a84b4c76e66710-{n}@10.0.0.{n}",
            cseq=10 + n,
            path=("<sip:term@pcscf1.ims.example.net;lr>", "<sip:sbc.ims.example.net;lr>"),
            registered_at=NOW - n,
            received=f"tcp:10.0.0.{n}:40{n}00",
            user_agent="Ünïcode-Phone/2.1" if n == 1 else None,
            allow=("INVITE", "MESSAGE") if n == 1 else (),
            visited_network='"Visited Network"' if n == 1 else None,
            icid=f"icid-{n}" if n == 1 else None,
        )
    impu.profile = Profile(
        impi=identity[4:],
        identities=(identity, "tel:+15551230001", "sip:+15551230001@ims.example.net"),
        barred=frozenset({"tel:+15551230001"}),
        user_data=(
            '<?xml version="1.0" encoding="UTF-8"?><IMSSubscription>'
            f"<PrivateID>{identity[4:]}</PrivateID><ServiceProfile><PublicIdentity>"
            f"<Identity>{identity}</Identity></PublicIdentity><InitialFilterCriteria>"
            "<Priority>0</Priority><TriggerPoint><ConditionTypeCNF>1</ConditionTypeCNF>"
            "<SPT><Method>INVITE</Method></SPT></TriggerPoint><ApplicationServer>"
            "<ServerName>sip:as.ims.example.net</ServerName></ApplicationServer>"
            "</InitialFilterCriteria></ServiceProfile></IMSSubscription>"
        ),
        written=(f"<{identity}>",),  # as that user data says: older records parse it again
        charging=(("ccf", "aaa://ccf.ims.example.net"), ("ecf", "aaa://ecf.ims.example.net")),
    )
    return impu


def assert_same(a: Impu, b: Impu) -> None:
    def state(impu):
        return (impu.identity, impu.state, impu.bindings, impu.profile, impu.unreg_until,
                impu.last_sar_at)

    assert state(a) == state(b)


def test_codec_names_every_binding_field():
    # A new Binding field needs a place in the record layout (and a new RECORD_VERSION).
    assert set(BINDING_FIELDS) == {f.name for f in fields(Binding)}


def test_codec_round_trips_unregistered_impu_without_profile():
    impu = Impu("tel:+15550000")
    impu.state = RegState.UNREGISTERED
    assert_same(decode_impu(impu.identity, encode_impu(impu)), impu)


def test_codec_keeps_the_end_of_the_unregistered_validity():
    impu = Impu("sip:unreg@ims.example.net")
    impu.apply(RegState.UNREGISTERED, {}, Profile(None, (impu.identity,), frozenset(), None),
               unreg_until=NOW + 1800)
    record = encode_impu(impu)
    assert msgpack.unpackb(record)[0] == RECORD_VERSION
    assert decode_impu(impu.identity, record).unreg_until == NOW + 1800


def test_codec_keeps_the_time_of_the_last_sar_and_version_3_loads_without_it():
    impu = realistic_impu("sip:sar@ims.example.net")
    impu.last_sar_at = NOW - 60
    assert decode_impu(impu.identity, encode_impu(impu)).last_sar_at == NOW - 60
    v3 = json.dumps(version_4(impu)[:-1]).replace("[4,", "[3,", 1).encode()
    old = decode_impu(impu.identity, v3)
    assert old.last_sar_at is None  # its next re-REGISTER sends a SAR
    assert old.bindings == without_charging(impu).bindings


def version_4(impu: Impu) -> list:
    """The record as version 4 wrote it: no charging fields in bindings, a profile without
    P-Associated-URI values and charging addresses, no HSS host."""
    version, state, bindings, profile, *rest = msgpack.unpackb(encode_impu(impu))
    return [4, state, [b[:-2] for b in bindings], profile and profile[:5], *rest[:-1]]


def without_charging(impu: Impu) -> Impu:
    for binding in impu.bindings.values():
        binding.visited_network = binding.icid = None
    if impu.profile is not None:
        impu.profile.charging = ()
    return impu


def test_codec_keeps_charging_and_version_4_loads_without_it():
    impu = realistic_impu("sip:charged@ims.example.net")
    loaded = decode_impu(impu.identity, encode_impu(impu))
    assert loaded.profile.charging == impu.profile.charging
    assert [(b.visited_network, b.icid) for b in loaded.bindings.values()] == [
        ('"Visited Network"', "icid-1"), (None, None)]
    assert_same(decode_impu(impu.identity, json.dumps(version_4(impu)).encode()),
                without_charging(impu))


def test_codec_keeps_p_associated_uri_as_written_and_older_records_rebuild_it():
    xml = ('<IMSSubscription><PrivateID>w@ims.example.net</PrivateID><ServiceProfile>'
           '<PublicIdentity><Identity>sip:w@ims.example.net;user=phone</Identity><Extension>'
           '<IdentityType>0</IdentityType><Extension><DisplayName>W</DisplayName></Extension>'
           '</Extension></PublicIdentity></ServiceProfile></IMSSubscription>')
    impu = realistic_impu("sip:w@ims.example.net")
    impu.profile = profile_from_user_data(xml)
    written = ('"W" <sip:w@ims.example.net;user=phone>',)
    assert impu.profile.written == written
    assert decode_impu(impu.identity, encode_impu(impu)).profile.written == written
    assert impu.profile.user_data is None  # no iFCs: nothing reads it again
    old = version_4(impu)  # before the values were kept, the user data was: parsed on load
    old[3][3] = xml
    assert decode_impu(impu.identity, json.dumps(old).encode()).profile.written == written


def test_codec_keeps_the_hss_of_the_user_and_version_4_loads_without_it():
    impu = realistic_impu("sip:affine@ims.example.net")
    impu.hss_host, impu.last_sar_at = "hss2.ims.example.net", NOW - 60
    assert decode_impu(impu.identity, encode_impu(impu)).hss_host == "hss2.ims.example.net"
    old = decode_impu(impu.identity, json.dumps(version_4(impu)).encode())
    assert old.hss_host is None and old.last_sar_at == NOW - 60  # realm routing until an SAA


def test_version_2_records_still_load():
    # As version 2 wrote them: one binding with "allow", a profile, one subscription, and no
    # validity (the shard restarts that of an UNREGISTERED identity on load).
    v2 = (b'[2,1,[["sip:v2@10.0.0.1:5060","uri:sip:v2@10.0.0.1:5060",1700000600.5,null,null,'
          b'null,[],"call-1",3,["<sip:pcscf.ims.example.net;lr>"],1700000000.5,'
          b'"udp:10.0.0.1:5060","phone/1",["INVITE"]]],'
          b'["v2@ims.example.net",["sip:v2@ims.example.net"],[],null,[]],'
          b'[["sip:v2@ims.example.net","sip:v2@ims.example.net","sub-1","ue","scscf",'
          b'"sip:v2@10.0.0.1:5060",[],1,1700000600.0,null,"udp:10.0.0.1:5060",2,2,'
          b'"sip-transport-n-0"]]]')
    impu = decode_impu("sip:v2@ims.example.net", v2)
    assert impu.state == RegState.REGISTERED
    (binding,) = impu.bindings.values()
    assert (binding.expires_at, binding.path, binding.allow) == (
        1700000600.5, ("<sip:pcscf.ims.example.net;lr>",), ("INVITE",))
    assert impu.profile.identities == ("sip:v2@ims.example.net",)
    (sub,) = impu.subscriptions.values()
    assert (sub.call_id, sub.local_cseq, sub.version, sub.transport) == (
        "sub-1", 2, 2, "sip-transport-n-0")
    assert impu.unreg_until is None
    unregistered = decode_impu("tel:+15550000", b'[2,2,[],["x",["tel:+15550000"],[],null,[]],[]]')
    assert (unregistered.state, unregistered.unreg_until) == (RegState.UNREGISTERED, None)


def test_version_1_records_read_as_bindings_that_accept_every_method():
    impu = realistic_impu("sip:old@ims.example.net")
    for binding in impu.bindings.values():
        binding.allow = ()
    version, state, bindings, profile, *_ = version_4(impu)
    v1 = json.dumps([1, state, [b[:-1] for b in bindings], profile]).encode()
    assert_same(decode_impu(impu.identity, v1), without_charging(impu))


def test_version_5_records_in_json_still_load():
    impu = realistic_impu("sip:json@ims.example.net")
    impu.hss_host, impu.last_sar_at = "hss2.ims.example.net", NOW - 60
    version, *layout = msgpack.unpackb(encode_impu(impu))
    assert version == 6
    assert_same(decode_impu(impu.identity, json.dumps([5, *layout]).encode()), impu)


@pytest.mark.parametrize("data", [
    b"not json", b"\xff\xfe", b"{}", b"[3,1,[],null]", b"[6,1,[],null,[],null,null,null,null]", b"[1,9,[],null]", b'[1,1,[["x"]],null]',
    b"\x93\x06\x01", msgpack.packb({"version": 6}), msgpack.packb(6), b"\x94\x09\x01\x90\xc0",
    msgpack.packb([6, 1, [], None, [], None, None, None, None]), b"",
])
def test_corrupt_record_raises_store_error_naming_the_identity(data):
    with pytest.raises(StoreError, match="sip:broken@example.com"):
        decode_impu("sip:broken@example.com", data)


def test_records_round_trip(make_store):
    impus = [realistic_impu(f"sip:user{n}@ims.example.net") for n in range(20)]

    async def main():
        store = await opened(make_store)
        await store.put_many([(i.identity, encode_impu(i)) for i in impus])
        await store.close()
        store = await opened(make_store)  # a restarted shard
        records = await load(store, {slot_of(i.identity) for i in impus})
        await store.close()
        return records

    records = run(main())
    assert sorted(records) == sorted(i.identity for i in impus)
    for impu in impus:
        assert_same(decode_impu(impu.identity, records[impu.identity]), impu)


def test_none_deletes_and_the_last_item_of_an_identity_wins(make_store):
    async def main():
        store = await opened(make_store)
        await store.put_many([("sip:a@x", b"a1"), ("sip:b@x", b"b1"), ("sip:c@x", b"c1")])
        await store.put_many([("sip:a@x", None), ("sip:b@x", None), ("sip:b@x", b"b2"),
                              ("sip:c@x", b"c2"), ("sip:c@x", None), ("sip:gone@x", None)])
        records = await load(store, range(SLOTS))
        await store.close()
        return records

    assert run(main()) == {"sip:b@x": b"b2"}


def test_load_slots_returns_exactly_the_identities_of_those_slots(make_store):
    identities = [f"sip:u{n}@ims.example.net" for n in range(500)]
    wanted_slots = {slot_of(i) for i in identities[:40]} | {0, SLOTS - 1}

    async def main():
        store = await opened(make_store)
        await store.put_many([(i, i.encode()) for i in identities])
        records = await load(store, wanted_slots)
        await store.close()
        return records

    records = run(main())
    expected = {i for i in identities if slot_of(i) in wanted_slots}
    assert set(records) == expected
    assert all(records[i] == i.encode() for i in expected)


def slots_of_shard(index: int, shards: int) -> list[int]:
    return [s for s in range(SLOTS) if jump_hash(s, shards) == index]


def test_sqlite_shards_find_their_records_after_the_shard_count_changes(tmp_path):
    identities = [f"sip:u{n}@ims.example.net" for n in range(300)]

    async def layout(shards: int, write: list[str] = ()) -> list[dict[str, bytes]]:
        """Opens every shard of a layout, writes ``write`` each to its shard, loads each."""
        stores = [open_store("sqlite", str(tmp_path), "", i) for i in range(shards)]
        for store in stores:
            await store.open()
        for i, store in enumerate(stores):
            await store.put_many([(u, u.encode()) for u in write if shard_of(u, shards) == i])
        loaded = [await load(store, slots_of_shard(i, shards)) for i, store in enumerate(stores)]
        for store in stores:
            await store.close()
        return loaded

    async def main():
        await layout(2, identities)
        three = await layout(3)
        # A crash between the copy and the deletion leaves a stale copy in a foreign file.
        kept = next(u for u in identities if shard_of(u, 3) == 0)
        stale = open_store("sqlite", str(tmp_path), "", 2)
        await stale.open()
        await stale.put_many([(kept, b"stale")])
        await stale.close()
        one = await layout(1)
        return three, one

    three, one = run(main())
    for index, records in enumerate(three):
        assert set(records) == {u for u in identities if shard_of(u, 3) == index}
        assert all(data == identity.encode() for identity, data in records.items())
    assert one == [{u: u.encode() for u in identities}]
    with contextlib.closing(sqlite3.connect(tmp_path / "shard-2.db")) as db:
        assert db.execute("SELECT identity FROM impu").fetchall() == []  # the stale copy too


class CountingStore:
    """Wraps a store: counts flushes, remembers what each finished flush stored."""

    def __init__(self, inner, delay: float = 0.0):
        self.inner, self.delay = inner, delay
        self.flushes: list[list[tuple[str, bytes | None]]] = []
        self.stored: dict[str, bytes | None] = {}
        self.in_flight = self.max_in_flight = 0

    async def put_many(self, items):
        self.flushes.append(list(items))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            await self.inner.put_many(items)
        finally:
            self.in_flight -= 1
        self.stored.update(items)

    async def close(self):
        await self.inner.close()


def test_write_through_groups_concurrent_writes_and_returns_once_stored(make_store):
    identities = [f"sip:w{n}@ims.example.net" for n in range(300)]

    async def main():
        store = CountingStore(await opened(make_store))
        wt = WriteThrough(store)

        async def write(identity):
            await wt.write(identity, identity.encode())
            assert store.stored.get(identity) == identity.encode()
            return await load(store.inner, [slot_of(identity)])

        seen = await asyncio.gather(*map(write, identities))
        await wt.close()
        return store, seen

    store, seen = run(main())
    assert len(store.flushes) == 1
    for identity, records in zip(identities, seen):
        assert records[identity] == identity.encode()  # readable from the store itself


def test_write_through_flushes_one_group_at_a_time_in_order(make_store):
    async def main():
        store = CountingStore(await opened(make_store), delay=0.05)
        wt = WriteThrough(store, max_delay=0)
        first = asyncio.ensure_future(wt.write("sip:x@x", b"v0"))
        while not store.in_flight:
            await asyncio.sleep(0.001)
        # These arrive while the first flush is in flight: they ride together in the next one.
        later = [wt.write("sip:x@x", f"v{n}".encode()) for n in range(1, 20)]
        later += [wt.write(f"sip:y{n}@x", b"y") for n in range(10)]
        await asyncio.gather(first, *later)
        records = await load(store.inner, range(SLOTS))
        await wt.close()
        return store, records

    store, records = run(main())
    assert [len(f) for f in store.flushes] == [1, 11]
    assert store.max_in_flight == 1
    assert records["sip:x@x"] == b"v19"


def test_write_through_max_delay_lets_later_writes_join_the_group(make_store):
    async def main():
        store = CountingStore(await opened(make_store))
        wt = WriteThrough(store, max_delay=0.1)

        async def late_write():
            await asyncio.sleep(0.02)
            await wt.write("sip:late@x", b"2")

        await asyncio.gather(wt.write("sip:early@x", b"1"), late_write())
        await wt.close()
        return store

    assert [sorted(dict(f)) for f in run(main()).flushes] == [["sip:early@x", "sip:late@x"]]


def test_a_cancelled_writer_does_not_cancel_its_group(make_store):
    async def main():
        store = CountingStore(await opened(make_store), delay=0.05)
        wt = WriteThrough(store)
        impatient = asyncio.ensure_future(wt.write("sip:impatient@x", b"1"))
        patient = asyncio.ensure_future(wt.write("sip:patient@x", b"1"))
        while not store.in_flight:
            await asyncio.sleep(0.001)
        impatient.cancel()
        await patient
        records = await load(store.inner, range(SLOTS))
        await wt.close()
        return records

    assert run(main()) == {"sip:impatient@x": b"1", "sip:patient@x": b"1"}


def test_write_through_reports_a_failed_flush_to_its_writers_only(make_store):
    class FailingOnce(CountingStore):
        async def put_many(self, items):
            if not self.flushes:
                self.flushes.append(list(items))
                raise StoreError("disk on fire")
            await super().put_many(items)

    async def main():
        store = FailingOnce(await opened(make_store))
        wt = WriteThrough(store)
        failed = await asyncio.gather(wt.write("sip:a@x", b"1"), wt.write("sip:b@x", b"1"),
                                      return_exceptions=True)
        await wt.write("sip:a@x", b"2")
        records = await load(store.inner, range(SLOTS))
        await wt.close()
        return failed, records

    failed, records = run(main())
    assert all(isinstance(e, StoreError) for e in failed)
    assert records == {"sip:a@x": b"2"}


def test_null_store_keeps_nothing():
    async def main():
        store = open_store("none", "", "", 0)
        await store.open()
        await WriteThrough(store).write("sip:a@x", b"1")
        return await load(store, range(SLOTS))

    assert run(main()) == {}
    assert isinstance(open_store("none", "", "", 0), NullStore)
    with pytest.raises(ValueError):
        open_store("mongodb", "", "", 0)


def test_corrupt_stored_record_raises_store_error_naming_the_identity(make_store):
    async def main():
        store = await opened(make_store)
        await store.put_many([("sip:bad@ims.example.net", b'[1,1,[["truncated"')])
        records = await load(store, [slot_of("sip:bad@ims.example.net")])
        await store.close()
        return records

    ((identity, data),) = run(main()).items()
    with pytest.raises(StoreError, match="sip:bad@ims.example.net"):
        decode_impu(identity, data)


CRASHING_WRITER = """
import asyncio, sys
from actors.store.base import WriteThrough, open_store

async def main(directory, identity, record):
    store = open_store("sqlite", directory, "", 3)
    await store.open()
    await WriteThrough(store).write(identity, bytes.fromhex(record))
    print("written", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


def test_sqlite_write_survives_kill_9_right_after_it_returns(tmp_path):
    impu = realistic_impu("sip:crash@ims.example.net")
    record = encode_impu(impu)
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path), impu.identity, record.hex()],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline() == "written\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert (tmp_path / "shard-3.db-wal").stat().st_size > 0  # the commit was never checkpointed

    async def main():
        store = open_store("sqlite", str(tmp_path), "", 3)
        await store.open()
        records = await load(store, [slot_of(impu.identity)])
        await store.close()
        return records

    records = run(main())
    assert_same(decode_impu(impu.identity, records[impu.identity]), impu)


def test_sqlite_syncs_every_commit_to_disk(tmp_path):
    # synchronous=FULL (2): a commit is on disk, not only in the page cache, before put_many
    # returns, so a 200 OK'd registration survives a power failure.
    store = open_store("sqlite", str(tmp_path), "", 0)

    async def pragma():
        await store.open()
        try:
            return await store._run(lambda: store._db.execute("PRAGMA synchronous").fetchone())
        finally:
            await store.close()

    assert run(pragma()) == (2,)


def test_redis_keys_live_under_the_configured_prefix(redis_server):
    prefix = f"test-{uuid.uuid4().hex}:"
    identity = "sip:prefixed@ims.example.net"

    async def main():
        store = open_store("redis", "", redis_server.url, 0, prefix=prefix)
        await store.open()
        await store.put_many([(identity, b"r")])
        await store.close()

    run(main())
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert sorted(client.keys(f"{prefix}*")) == [
            f"{prefix}impu:{identity}".encode(), f"{prefix}slots".encode()]
        assert client.zscore(f"{prefix}slots", identity) == slot_of(identity)
    finally:
        client.close()


def _fails_quickly(store: RedisStore, operation, limit: float) -> StoreError:
    async def main():
        started = time.monotonic()
        with pytest.raises(StoreError, match="redis 127.0.0.1") as failure:
            await operation(store)
        assert time.monotonic() - started < limit
        with contextlib.suppress(StoreError):
            await store.close()
        return failure.value

    return run(main())


@needs_redis_server
def test_redis_unreachable_raises_store_error_quickly():
    url = f"redis://127.0.0.1:{redis_helper.free_port()}/0"  # nobody listens there
    _fails_quickly(RedisStore(url), lambda s: s.open(), limit=2.0)


@needs_redis_server
def test_redis_stopping_under_a_store_raises_store_error_quickly():
    server = redis_helper.RedisServer().start()

    async def write_after_stop(store):
        await store.open()
        await store.put_many([("sip:a@x", b"1")])
        server.stop()
        await store.put_many([("sip:a@x", b"2")])

    try:
        _fails_quickly(RedisStore(server.url), write_after_stop, limit=3.0)
    finally:
        server.stop()


def test_redis_that_never_answers_raises_store_error_after_the_timeout():
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        _fails_quickly(RedisStore(url, timeout=0.3), lambda s: s.open(), limit=3.0)
