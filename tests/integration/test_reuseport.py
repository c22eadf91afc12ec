"""Datagrams from ONE sender spread over the sockets sharing a port (SO_REUSEPORT + cBPF)."""
import socket
import time

from transport.sip.reuseport import spread_randomly


def group(port: int, members: int, spread: bool) -> list[socket.socket]:
    sockets = []
    for _ in range(members):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.setblocking(False)
        sockets.append(sock)
    if spread:
        spread_randomly(sockets[0], members)
    return sockets


def counts_from_one_sender(sockets: list[socket.socket], port: int, datagrams: int) -> list[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for n in range(datagrams):
            sender.sendto(b"x%d" % n, ("127.0.0.1", port))
        time.sleep(0.2)
    counts = []
    for sock in sockets:
        received = 0
        while True:
            try:
                sock.recv(64)
            except BlockingIOError:
                break
            received += 1
        counts.append(received)
        sock.close()
    return counts


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_without_the_program_one_sender_lands_on_one_socket():
    port = free_udp_port()
    counts = counts_from_one_sender(group(port, 2, spread=False), port, 200)
    assert sorted(counts) == [0, 200]


def test_with_the_program_one_sender_reaches_every_socket():
    port = free_udp_port()
    counts = counts_from_one_sender(group(port, 2, spread=True), port, 200)
    assert sum(counts) == 200
    assert min(counts) > 50  # binomial(200, 1/2): below 50 has odds of about 1e-12
