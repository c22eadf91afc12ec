"""Spread UDP datagrams at random over the sockets that share a port with SO_REUSEPORT.

The kernel picks a socket of a reuseport group by hashing the sender's address and port, and an
S-CSCF hears from a few P-CSCFs on fixed ports: without help, each P-CSCF's traffic lands on one
transport whatever their number. A classic-BPF program attached to the group returns a random
index instead; an index past the group's size makes the kernel fall back to the hash.
"""
from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = 51  # linux/asm-generic/socket.h
_LOAD_RANDOM = (0x20, 0, 0, (-0x1000 + 56) & 0xFFFFFFFF)  # A = random (SKF_AD_OFF + SKF_AD_RANDOM)
_MOD_K = 0x94  # A = A % k
_RETURN_A = (0x16, 0, 0, 0)


def spread_randomly(sock: socket.socket, sockets: int) -> None:
    """Makes the group of ``sock`` hand each datagram to one of its first ``sockets`` members."""
    program = (_LOAD_RANDOM, (_MOD_K, 0, 0, sockets), _RETURN_A)
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }, native alignment
    fprog = struct.pack("HP", len(program), ctypes.addressof(filters))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
