"""Processes under a PID, read from /proc (Linux): the tests kill Ray's processes by PID, and
only those of the cluster they started, and look at the sockets they listen on."""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    """The resident memory of ``pid``; 0 once it has ended."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (children, their children...), at the time of the call."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])  # the name may hold spaces
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    """The process's title as ps shows it ('' once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def listening_sockets(pids: list[int]) -> list[tuple[int, str, str, int]]:
    """The sockets these processes listen on: TCP listeners and UDP sockets bound without a
    peer, as (pid, "tcp" or "udp", address, port), from /proc/net and each process's fds."""
    found = []
    table = _inet_table()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # ended meanwhile
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in table:
                found.append((pid, *table[target[8:-1]]))
    return sorted(set(found))


def _inet_table() -> dict[str, tuple[str, str, int]]:
    """socket inode -> (protocol, local address, port) of every listening socket."""
    table = {}
    for protocol, family in (("tcp", 4), ("tcp6", 6), ("udp", 4), ("udp6", 6)):
        try:
            lines = Path(f"/proc/net/{protocol}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            listening = state == "0A" if protocol.startswith("tcp") else \
                remote.split(":")[1] == "0000"
            if listening:
                address, port = local.split(":")
                table[inode] = (protocol[:3], _address(address, family), int(port, 16))
    return table


def _address(hex_address: str, family: int) -> str:
    """An address of /proc/net: 32-bit words in host byte order (little-endian here)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if family == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)
