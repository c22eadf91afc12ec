"""Fuzzing `scscf serve` over real sockets: mutated REGISTER, SUBSCRIBE and PUBLISH.

    python3 scripts/fuzz_sip.py [--count 1000000] [--batch 10000] [--rate 3000] [--seed 1]
        [--tcp-share 0.2] [--max-expires 60] [--warmup BATCHES] [--log FILE]
        [--target HOST:PORT [--config site.toml] [--pid PID ...]]

Each message is a valid request with one to three mutations: bytes flipped, cut short, a
header repeated, a value blown up to tens of KB, invalid UTF-8, numbers that are negative,
huge or not numbers, a line dropped, a body whose length lies; one in twenty goes unmutated,
so the accepting paths (bindings, subscriptions, NOTIFYs) run too. They go over UDP and, a
``--tcp-share`` of them, over a few TCP connections, paced at ``--rate`` a second.

After every batch it checks that a valid REGISTER is still answered 200 (retransmitted as a
UE would, for up to 30 s), that no Ray actor of the registrar was restarted (the pids of its
shard, transport and Cx pool processes) and that the RPC shows every transport running and
every shard loaded; it prints the answers by status so far and the RSS of the registrar's
processes, so that growth shows. Exits 1 at the first failed check. At the end it prints the
RSS of every batch after ``--warmup`` batches (default: the first quarter) and how far those of
the last half lie apart, so that flat memory reads as a spread of a few %.

Without --target it starts `scscf serve` (a local Ray of its own, authentication off, bindings
and subscriptions allowed down to 1 s and, with ``--max-expires``, up to 60 s: what the fuzz
registers, mutated expiries of days included, turns over instead of piling up). With
--target the registrar must accept an unauthenticated REGISTER; --config names its TOML for
the RPC checks and --pid its `scscf serve` process for the restart and memory checks; on a
`ray start` cluster the actors run under the raylet, so give the raylet's pid as a second --pid
(the run refuses to start when no actor is found under them).
Not a test: a run of a million takes hours on a small machine.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_register import descendants, process_name  # noqa: E402
from scripts.harness.processes import rss_bytes  # noqa: E402
from transport.sip.errors import SipParseError  # noqa: E402
from transport.sip.framing import StreamFramer  # noqa: E402

ACTORS = ("ray::ImpuShard", "ray::SipTransport", "ray::CxPool")
USERS = 50
UDP_LIMIT, TCP_LIMIT = 60000, 120000  # the largest message sent over each

REGISTER = (
    "REGISTER sip:ims.test SIP/2.0\r\n"
    "Via: SIP/2.0/{proto} 127.0.0.1:{port};branch=z9hG4bK{token};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:{user}@ims.test>;tag={tag}\r\n"
    "To: <sip:{user}@ims.test>\r\n"
    "Call-ID: {token}@127.0.0.1\r\n"
    "CSeq: 1 REGISTER\r\n"
    'Contact: <sip:{user}@127.0.0.1:{port}>;expires=2;+sip.instance="<urn:uuid:{token}>"\r\n'
    "Path: <sip:pcscf.ims.test;lr>\r\n"
    "Supported: path\r\n"
    'Authorization: Digest username="{user}@ims.test", realm="ims.test", '
    'uri="sip:ims.test", nonce="", response=""\r\n'
    "Expires: 2\r\n"
    "User-Agent: fuzz\r\n"
    "Content-Length: 0\r\n\r\n")
SUBSCRIBE = (
    "SUBSCRIBE sip:{user}@ims.test SIP/2.0\r\n"
    "Via: SIP/2.0/{proto} 127.0.0.1:{port};branch=z9hG4bK{token}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:{user}@ims.test>;tag={tag}\r\n"
    "To: <sip:{user}@ims.test>\r\n"
    "Call-ID: {token}@127.0.0.1\r\n"
    "CSeq: 1 SUBSCRIBE\r\n"
    "Contact: <sip:{user}@127.0.0.1:{port}>\r\n"
    # A name, so NOTIFYs take the next-hop lookup; localhost, so it never leaves this host.
    "Record-Route: <sip:localhost:{port};lr>\r\n"
    "P-Asserted-Identity: <sip:{user}@ims.test>\r\n"
    "Event: reg\r\n"
    "Accept: application/reginfo+xml\r\n"
    "Expires: 2\r\n"
    "Content-Length: 0\r\n\r\n")
REGINFO = (
    '<?xml version="1.0"?><reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" '
    'state="full"><registration aor="sip:{user}@ims.test" id="a" state="active">'
    '<contact id="c" state="terminated" event="unregistered">'
    "<uri>sip:{user}@127.0.0.1:{port}</uri></contact></registration></reginfo>")
PUBLISH = (
    "PUBLISH sip:{user}@ims.test SIP/2.0\r\n"
    "Via: SIP/2.0/{proto} 127.0.0.1:{port};branch=z9hG4bK{token}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:{user}@ims.test>;tag={tag}\r\n"
    "To: <sip:{user}@ims.test>\r\n"
    "Call-ID: {token}@127.0.0.1\r\n"
    "CSeq: 1 PUBLISH\r\n"
    "P-Asserted-Identity: <sip:{user}@ims.test>\r\n"
    "Event: reg\r\n"
    "Expires: 2\r\n"
    "Content-Type: application/reginfo+xml\r\n"
    "Content-Length: {length}\r\n\r\n{body}")

BAD_NUMBERS = (b"-1", b"0", b"4294967296", b"99999999999999999999999999", b"1e9", b"0x10",
               b"", b" ", b"\xc2\xb2", b"NaN", b"1.5", b"+7", b"--2", b"9" * 400)
BAD_BYTES = (b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
             b"\x00", b"\r", b"\n", b"\x1b[2J")
NUMERIC = (b"CSeq", b"Expires", b"Content-Length", b"Max-Forwards", b"expires=", b"rport",
           b"SIP/2.0/", b"reg-id=", b"q=")
FILLERS = (b"a", b";p=v", b"<sip:x@h>,", b"%ff", b'"\\"', b",", b" ", b"z9hG4bK")


def valid_message(method: str, rng: random.Random, proto: str, port: int) -> bytes:
    fields = {"proto": proto, "port": port, "user": f"fuzz{rng.randrange(USERS)}",
              "token": secrets.token_hex(8), "tag": secrets.token_hex(4)}
    if method == "PUBLISH":
        body = REGINFO.format(**fields)
        return PUBLISH.format(length=len(body), body=body, **fields).encode()
    return (REGISTER if method == "REGISTER" else SUBSCRIBE).format(**fields).encode()


class Mutator:
    """The mutations, each from bytes to bytes, drawn from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.kinds = [self.flip, self.truncate, self.duplicate_header, self.huge_value,
                      self.bad_utf8, self.bad_number, self.drop_line, self.lying_body]
        self.weights = [20, 10, 12, 4, 14, 20, 10, 10]
        self.used: Counter[str] = Counter()

    def mutate(self, data: bytes, limit: int) -> bytes:
        if self.rng.random() < 0.05:
            self.used["none"] += 1
            return data
        for kind in self.rng.choices(self.kinds, self.weights, k=self.rng.randint(1, 3)):
            self.used[kind.__name__] += 1
            data = kind(data, limit)
        return data[:limit]

    def _lines(self, data: bytes) -> tuple[list[bytes], bytes]:
        head, sep, body = data.partition(b"\r\n\r\n")
        return head.split(b"\r\n"), sep + body

    def flip(self, data: bytes, limit: int) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 8)):
            if out:
                out[self.rng.randrange(len(out))] ^= self.rng.randint(1, 255)
        return bytes(out)

    def truncate(self, data: bytes, limit: int) -> bytes:
        return data[:self.rng.randrange(len(data) + 1)]

    def duplicate_header(self, data: bytes, limit: int) -> bytes:
        lines, rest = self._lines(data)
        if len(lines) < 2:
            return data
        line = self.rng.choice(lines[1:])
        for _ in range(self.rng.choice((1, 2, 5, 50, 500))):
            lines.insert(self.rng.randint(1, len(lines)), line)
        return b"\r\n".join(lines) + rest

    def huge_value(self, data: bytes, limit: int) -> bytes:
        lines, rest = self._lines(data)
        if len(lines) < 2:
            return data
        n = self.rng.randrange(1, len(lines))
        name, _, _ = lines[n].partition(b":")
        filler = self.rng.choice(FILLERS)
        size = self.rng.choice((1000, 8000, limit // 2))
        lines[n] = name + b": " + filler * (size // len(filler))
        return b"\r\n".join(lines) + rest

    def bad_utf8(self, data: bytes, limit: int) -> bytes:
        at = self.rng.randrange(len(data) + 1)
        return data[:at] + self.rng.choice(BAD_BYTES) + data[at:]

    def bad_number(self, data: bytes, limit: int) -> bytes:
        word = self.rng.choice(NUMERIC)
        at = data.find(word)
        if at < 0:
            return data
        start = at + len(word)
        while start < len(data) and data[start:start + 1] in b": /":
            start += 1
        end = start
        while end < len(data) and data[end:end + 1].isdigit():
            end += 1
        return data[:start] + self.rng.choice(BAD_NUMBERS) + data[end:]

    def drop_line(self, data: bytes, limit: int) -> bytes:
        lines, rest = self._lines(data)
        del lines[self.rng.randrange(len(lines))]
        return b"\r\n".join(lines) + rest

    def lying_body(self, data: bytes, limit: int) -> bytes:
        body = bytes(self.rng.randrange(256) for _ in range(self.rng.choice((1, 40, 900))))
        return data + body


# -- The registrar's processes, from /proc

def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped at the registrar's UDP sockets on ``port`` (its receive
    buffers were full: the registrar fell behind the offered rate)."""
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                drops += int(fields[-1])
    return drops


class Processes:
    """The registrar's process tree: its RSS, and the pids of its actors."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = set(roots)
        self.actors = self._actors()

    def _pids(self) -> set[int]:
        return descendants(self.roots)

    def _actors(self) -> dict[int, str]:
        return {pid: name for pid in self._pids()
                if (name := process_name(pid)) in ACTORS}

    def restarted(self) -> list[str]:
        """The actors whose process is not the one they had at the start."""
        now = self._actors()
        gone = [f"{name} (pid {pid})" for pid, name in self.actors.items() if pid not in now]
        new = [f"{name} (new pid {pid})" for pid, name in now.items() if pid not in self.actors]
        return gone + new

    def rss(self) -> tuple[int, int]:
        """RSS of every process of the registrar, and of its actors alone."""
        pids = self._pids()
        return (sum(rss_bytes(p) for p in pids), sum(rss_bytes(p) for p in self.actors))


# -- The traffic

class Answers(asyncio.DatagramProtocol):
    """Counts what comes back: responses by status, requests (NOTIFYs) by method."""

    def __init__(self, seen: Counter) -> None:
        self.seen = seen

    def datagram_received(self, data: bytes, addr) -> None:
        count(self.seen, data)

    def error_received(self, exc: Exception) -> None:
        self.seen[f"udp error {type(exc).__name__}"] += 1


def count(seen: Counter, message: bytes) -> None:
    if message.startswith(b"SIP/2.0 "):
        seen[message[8:11].decode(errors="replace")] += 1
    else:
        seen[message.split(b" ", 1)[0][:12].decode(errors="replace")] += 1


class TcpFlow:
    """One TCP connection to the registrar, opened again when the registrar closes it."""

    def __init__(self, host: str, port: int, seen: Counter) -> None:
        self.host, self.port, self.seen = host, port, seen
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task | None = None
        self.local_port = 0

    async def send(self, data: bytes) -> None:
        if self.writer is None or self.writer.is_closing():
            reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.local_port = self.writer.get_extra_info("sockname")[1]
            self.seen["tcp connects"] += 1
            self.reader_task = asyncio.create_task(self._read(reader, self.writer))
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > 1 << 20:
            await self.writer.drain()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                for frame in framer.feed(data):
                    if isinstance(frame, bytes):
                        count(self.seen, frame)
        except (OSError, SipParseError) as exc:  # reset by the registrar, or a broken frame
            self.seen[f"tcp {type(exc).__name__}"] += 1
        writer.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def probe(host: str, port: int) -> float:
    """Seconds until a valid REGISTER is answered 200 (retransmitted every second, as a UE
    over UDP would); raises AssertionError after 30 s or on another final answer."""
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            answers.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Probe, local_addr=("127.0.0.1", 0))
    local = transport.get_extra_info("sockname")[1]
    request = REGISTER.format(proto="UDP", port=local, user="fuzz-probe",
                              token=secrets.token_hex(8), tag="p").encode()
    started = time.monotonic()
    try:
        while time.monotonic() - started < 30:
            transport.sendto(request, (host, port))
            try:
                answer = await asyncio.wait_for(answers.get(), 1.0)
            except TimeoutError:
                continue
            status = answer[8:11]
            if status == b"200":
                return time.monotonic() - started
            assert status.startswith(b"1"), f"probe REGISTER answered {answer[:60]!r}"
        raise AssertionError("probe REGISTER unanswered for 30 s")
    finally:
        transport.close()


# -- The run

async def fuzz(args, host: str, port: int, processes: Processes, rpc_status) -> int:
    rss_log: list[tuple[int, int]] = []  # (all, actors) after each batch
    rng = random.Random(args.seed)
    mutator = Mutator(rng)
    seen: Counter = Counter()
    loop = asyncio.get_running_loop()
    udp = [await loop.create_datagram_endpoint(lambda: Answers(seen),
                                               local_addr=("127.0.0.1", 0))
           for _ in range(4)]
    tcp = [TcpFlow(host, port, seen) for _ in range(4)]
    sent: Counter = Counter()
    rss_start = processes.rss()
    drops_start = udp_drops(port)
    print(f"fuzzing {host}:{port}: {args.count} messages, batches of {args.batch}; "
          f"{len(processes.actors)} actor processes; RSS {mb(rss_start[0])} "
          f"(actors {mb(rss_start[1])})", flush=True)
    started = time.monotonic()
    try:
        for n in range(args.count):
            method = rng.choice(("REGISTER", "REGISTER", "SUBSCRIBE", "PUBLISH"))
            over_tcp = rng.random() < args.tcp_share
            if over_tcp:
                flow = rng.choice(tcp)
                data = valid_message(method, rng, "TCP", flow.local_port or 5999)
                try:
                    await flow.send(mutator.mutate(data, TCP_LIMIT))
                except OSError as exc:
                    seen[f"tcp send {type(exc).__name__}"] += 1
            else:
                transport, _ = rng.choice(udp)
                local = transport.get_extra_info("sockname")[1]
                data = valid_message(method, rng, "UDP", local)
                transport.sendto(mutator.mutate(data, UDP_LIMIT), (host, port))
            sent["tcp" if over_tcp else "udp"] += 1
            ahead = (n + 1) / args.rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            elif n % 100 == 0:
                await asyncio.sleep(0)  # let the answers in
            if (n + 1) % args.batch == 0 or n + 1 == args.count:
                failure = await check(n + 1, started, sent, seen, host, port, processes,
                                      rpc_status, rss_log)
                if failure:
                    print(f"FAILED: {failure}", flush=True)
                    return 1
    finally:
        for transport, _ in udp:
            transport.close()
        for flow in tcp:
            flow.close()
    elapsed = time.monotonic() - started
    rss_end = processes.rss()
    print(f"done: {args.count} messages in {elapsed:.0f} s ({args.count / elapsed:.0f}/s); "
          f"UDP {sent['udp']}, TCP {sent['tcp']}; UDP datagrams the kernel dropped at the "
          f"registrar: {udp_drops(port) - drops_start}")
    print(f"answers: {dict(sorted(seen.items()))}")
    print(f"mutations: {dict(sorted(mutator.used.items()))}")
    print(f"RSS start {mb(rss_start[0])} (actors {mb(rss_start[1])}), "
          f"end {mb(rss_end[0])} (actors {mb(rss_end[1])})")
    flatness(rss_log, len(rss_log) // 4 if args.warmup is None else args.warmup)
    return 0


def flatness(rss_log: list[tuple[int, int]], warmup: int) -> None:
    """The RSS of each batch after the warm-up, and the spread of the last half's."""
    kept = rss_log[warmup:]
    if not kept:
        return
    print(f"RSS per batch after {warmup} warm-up batches, MB (all/actors): "
          + " ".join(f"{a / 1e6:.0f}/{b / 1e6:.0f}" for a, b in kept))
    last = kept[len(kept) // 2:]
    for label, values in (("all", [a for a, _ in last]), ("actors", [b for _, b in last])):
        low, high = min(values), max(values)
        if not low:
            continue  # no such processes measured
        print(f"last {len(last)} batches, {label}: {mb(low)} to {mb(high)}, spread "
              f"{(high - low) / low * 100:.1f}% of the lowest; first {mb(values[0])}, "
              f"last {mb(values[-1])}")


async def check(done: int, started: float, sent: Counter, seen: Counter, host: str,
                port: int, processes: Processes, rpc_status,
                rss_log: list[tuple[int, int]]) -> str | None:
    """One batch's checks and its line; the reason of a failure, or None."""
    await quiet(seen)
    try:
        answered_in = await probe(host, port)
    except AssertionError as exc:
        return str(exc)
    restarted = processes.restarted()
    if restarted:
        return f"actors restarted: {', '.join(restarted)}"
    held = ""
    if rpc_status is not None:
        status = await asyncio.to_thread(rpc_status)
        held = (f"; holding {status['impus']} impus, {status['contacts']} contacts, "
                f"{status['subscriptions']} subscriptions")
        stopped = [t["name"] for t in status["transports"] if not t["running"]]
        unloaded = [s["name"] for s in status["shards"] if s["load_error"]]
        if stopped or unloaded:
            return f"transports not running {stopped}, shards not loaded {unloaded}"
    total, actors = processes.rss()
    rss_log.append((total, actors))
    rate = done / (time.monotonic() - started)
    top = ", ".join(f"{k} {v}" for k, v in seen.most_common(5))
    print(f"{done:>9} sent ({rate:.0f}/s; UDP {sent['udp']}, TCP {sent['tcp']}); probe 200 "
          f"in {answered_in * 1000:.0f} ms; actors unchanged; RSS {mb(total)} (actors "
          f"{mb(actors)}){held}; UDP drops {udp_drops(port)}; answers {top}", flush=True)
    return None


async def quiet(seen: Counter, still: float = 1.0, longest: float = 30.0) -> None:
    """Until no answer came for ``still`` seconds: the registrar has caught up."""
    deadline = time.monotonic() + longest
    last = -1
    while time.monotonic() < deadline and last != (total := sum(seen.values())):
        last = total
        await asyncio.sleep(still)


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=3000.0, help="messages a second")
    parser.add_argument("--tcp-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-expires", type=int, default=60,
                        help="without --target: the longest binding and subscription granted "
                             "(max_expires, subscription_max_expires); 0: the defaults")
    parser.add_argument("--log", help="without --target: write the registrar's output there")
    parser.add_argument("--warmup", type=int,
                        help="batches left out of the memory summary (default: a quarter)")
    parser.add_argument("--target", help="HOST:PORT of a running registrar")
    parser.add_argument("--config", help="with --target: its TOML, for the RPC checks")
    parser.add_argument("--pid", type=int, action="append", default=[],
                        help="with --target: its `scscf serve` process (and a `ray start` "
                        "cluster's raylet); repeatable")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.target:
        from actors.config import load_config, parse_host_port
        from actors.ops.rpc import call
        from actors.ops.rpc_access import client_token
        from scripts.cli import rpc_url

        host, port = parse_host_port(args.target, "--target")
        rpc = load_config(args.config).rpc if args.config else None

        def rpc_status() -> dict:
            return call(rpc_url(rpc.listen), "ulscscf.status", [], client_token(rpc))["result"]

        processes = Processes(args.pid)
        if args.pid and not processes.actors:
            sys.exit(f"--pid: no {', '.join(ACTORS)} process under {args.pid}: on a `ray start` "
                     "cluster give the raylet's pid too")
        return asyncio.run(fuzz(args, host, port, processes, rpc_status if rpc else None))
    from scripts.harness.ports import free_port
    from scripts.harness.registrar import registrar_config, start_registrar

    workdir = Path(tempfile.mkdtemp(prefix="fuzz-sip-"))
    port = free_port()
    expiries = "min_expires = 1\nsubscription_min_expires = 1"
    if args.max_expires:
        expiries += (f"\nmax_expires = {args.max_expires}"
                     f"\nsubscription_max_expires = {args.max_expires}")
    config = registrar_config("fuzz-sip", workdir, port, registrar=expiries)
    server = start_registrar(config, workdir, port, address=None, timeout=180)
    try:
        processes = Processes([server.process.pid])
        return asyncio.run(fuzz(args, "127.0.0.1", port, processes,
                                lambda: server.rpc("ulscscf.status")["result"]))
    finally:
        print(f"scscf serve stopped: exit status {server.stop()}")
        if args.log:
            Path(args.log).write_text("".join(server.output))
        stopping = next((n for n, line in enumerate(server.output) if line == "stopping\n"),
                        len(server.output))
        errors = [line for line in server.output[:stopping]
                  if " ERROR " in line or "Error:" in line]
        late = [line for line in server.output[stopping:]
                if " ERROR " in line or "Error:" in line]
        for when, lines in (("while serving", errors), ("while stopping", late)):
            print(f"registrar log: {len(lines)} error lines {when}")
            for line in dict.fromkeys(line.split(": ", 1)[-1].strip() for line in lines[:200]):
                print(f"  {line[:160]}")


if __name__ == "__main__":
    sys.exit(main())
