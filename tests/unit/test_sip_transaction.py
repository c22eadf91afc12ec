"""Non-INVITE transactions (RFC 3261 17.1.2, 17.2.2) driven by a fake clock."""
from __future__ import annotations

import pytest

from transport.sip import (
    Final,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Provisional,
    Retransmit,
    Terminated,
    Timeout,
    TransactionKey,
    make_response,
    parse_message,
)
from transport.sip.transaction import State


def request(branch: str = "z9hG4bK74bf9", method: str = "REGISTER",
            via_host: str = "pc33.atlanta.com"):
    return parse_message((
        f"{method} sip:registrar.biloxi.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host};branch={branch}\r\n"
        "From: Bob <sip:bob@biloxi.com>;tag=456248\r\n"
        "To: Bob <sip:bob@biloxi.com>\r\n"
        "Call-ID: 843817637684230@998sdasdh09\r\n"
        f"CSeq: 1826 {method}\r\nContent-Length: 0\r\n\r\n").encode())


def respond(status: int):
    return make_response(request(), status, "Whatever", to_tag="t")


# Server transaction (17.2.2)


def test_retransmissions_are_absorbed_until_the_tu_answers():
    server = NonInviteServerTransaction(reliable=False)
    assert server.state is State.TRYING
    assert server.on_request_retransmission() is None  # nothing to resend yet
    trying = respond(100)
    assert server.send_response(trying, now=0.1) == trying.to_bytes()
    assert server.state is State.PROCEEDING
    assert server.on_request_retransmission() == trying.to_bytes()
    ok = respond(200)
    server.send_response(ok, now=0.2)
    assert server.state is State.COMPLETED
    assert server.on_request_retransmission() == ok.to_bytes()
    assert server.on_request_retransmission() == ok.to_bytes()


def test_timer_j_is_64_t1_on_unreliable_transports():
    server = NonInviteServerTransaction(reliable=False)
    server.send_response(respond(200), now=10.0)
    assert server.next_deadline() == 10.0 + 32.0
    assert server.poll(41.9) == []
    assert server.on_request_retransmission() is not None
    assert server.poll(42.0) == [Terminated()]
    assert server.state is State.TERMINATED
    assert server.on_request_retransmission() is None
    assert server.next_deadline() is None
    assert server.poll(100.0) == []


def test_timer_j_is_zero_on_reliable_transports():
    server = NonInviteServerTransaction(reliable=True)
    server.send_response(respond(486), now=5.0)
    assert server.next_deadline() == 5.0
    assert server.poll(5.0) == [Terminated()]


def test_only_one_final_response():
    server = NonInviteServerTransaction(reliable=False)
    server.send_response(respond(200), now=0)
    with pytest.raises(ValueError):
        server.send_response(respond(500), now=1)


def test_no_timer_before_the_final_response():
    server = NonInviteServerTransaction(reliable=False)
    server.send_response(respond(100), now=0)
    assert server.next_deadline() is None
    assert server.poll(1000.0) == []
    assert server.on_transport_error() == [Terminated()]


# Client transaction (17.1.2)


def retransmission_times(client, until: float, step: float = 0.01) -> list[float]:
    times, now = [], 0.0
    while now <= until:
        if any(isinstance(action, Retransmit) for action in client.poll(now)):
            times.append(round(now, 2))
        now = round(now + step, 2)
    return times


def test_timer_e_doubles_up_to_t2_then_timer_f_times_out():
    req = request()
    client = NonInviteClientTransaction(req, 0.0, reliable=False)
    assert client.data == req.to_bytes()
    assert client.next_deadline() == 0.5
    # retransmits at T1, then intervals 2*T1, 4*T1, 8*T1 (=T2), T2, ... (17.1.2.2)
    assert retransmission_times(client, 31.99) == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert client.poll(32.0) == [Timeout()]
    assert client.state is State.TERMINATED
    assert client.next_deadline() is None


def test_retransmit_carries_the_request_bytes():
    client = NonInviteClientTransaction(request(), 0.0, reliable=False)
    [action] = client.poll(0.5)
    assert action == Retransmit(request().to_bytes())


def test_provisional_moves_to_proceeding_where_timer_e_uses_t2():
    client = NonInviteClientTransaction(request(), 0.0, reliable=False)
    client.poll(0.5)  # first retransmission, next one due at 1.5
    trying = respond(100)
    assert client.on_response(trying, 0.7) == [Provisional(trying)]
    assert client.state is State.PROCEEDING
    assert client.poll(1.5) == [Retransmit(client.data)]
    assert client.next_deadline() == 1.5 + 4.0


def test_final_response_then_timer_k_absorbs_retransmissions():
    client = NonInviteClientTransaction(request(), 0.0, reliable=False)
    ok = respond(200)
    assert client.on_response(ok, 2.0) == [Final(ok)]
    assert client.state is State.COMPLETED
    assert client.on_response(ok, 2.1) == []  # retransmitted final response
    assert client.next_deadline() == 2.0 + 5.0  # T4
    assert client.poll(6.9) == []
    assert client.poll(7.0) == [Terminated()]
    assert client.state is State.TERMINATED


def test_reliable_client_never_retransmits_and_has_no_timer_k():
    client = NonInviteClientTransaction(request(), 0.0, reliable=True)
    assert retransmission_times(client, 10.0, step=0.5) == []
    assert client.next_deadline() == 32.0
    ok = respond(200)
    assert client.on_response(ok, 11.0) == [Final(ok)]
    assert client.poll(11.0) == [Terminated()]


def test_timer_f_fires_in_proceeding_too():
    client = NonInviteClientTransaction(request(), 0.0, reliable=True)
    client.on_response(respond(100), 1.0)
    assert client.poll(32.0) == [Timeout()]


def test_transport_error_is_a_timeout():
    client = NonInviteClientTransaction(request(), 0.0, reliable=False)
    assert client.on_transport_error() == [Timeout()]
    assert client.next_deadline() is None


# Matching (17.1.3, 17.2.3)


def test_server_key_is_branch_sent_by_and_method():
    key = TransactionKey.server(request())
    assert key == TransactionKey("z9hG4bK74bf9", "pc33.atlanta.com", "REGISTER")
    assert TransactionKey.server(request(via_host="PC33.Atlanta.com")) == key
    assert TransactionKey.server(request(via_host="pc33.atlanta.com:5070")) != key
    assert TransactionKey.server(request(method="OPTIONS")) != key
    assert TransactionKey.server(request(branch="z9hG4bKother")) != key
    ack = TransactionKey.server(request(method="ACK"))
    assert ack.method == "INVITE"


def test_rfc2543_fallback_without_magic_cookie():
    legacy = TransactionKey.server(request(branch="1234"))
    assert legacy.branch == ""
    assert legacy == TransactionKey.server(request(branch="1234"))
    assert legacy != TransactionKey.server(request(branch="5678"))  # top Via differs
    assert TransactionKey.server(request(branch="z9hG4bK")).branch == ""  # cookie only


def test_client_key_matches_response_to_request():
    assert TransactionKey.client(request()) == TransactionKey.client(respond(200))
    assert TransactionKey.client(request()) != TransactionKey.client(request(method="OPTIONS"))
