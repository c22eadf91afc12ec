"""``scscf status``: the ``ulscscf.status`` answer as one screen of text."""
from __future__ import annotations


def render_status(status: dict) -> str:
    lines = [f"registrar   {status['impus']} impus, {status['contacts']} contacts, "
             f"{status['subscriptions']} subscriptions, {status['slots']} slots"]
    lines += _section("nodes", [
        f"{n['name']}  {n['address']}  {'alive' if n['alive'] else 'DEAD'}"
        for n in status["nodes"]])
    lines += _section("shards", [
        f"{s['name']}  on {s['node'] or '?'}  {s['slots']} slots  {s['impus']} impus  "
        f"{s['contacts']} contacts" for s in status["shards"]])
    lines += _section("transports", [
        f"{t['name']}  {' '.join(t['listen'])}  {'running' if t['running'] else 'NOT RUNNING'}"
        for t in status["transports"]])
    lines += _section("hss peers", [
        f"pool {p['pool']}  {p['address']}  {p['state']}"
        + (f"  {p['fqdn']} (realm {p['realm']})  {p['pending']} pending" if p["fqdn"] else "")
        for p in status["peers"]])
    return "\n".join(lines)


def _section(title: str, rows: list[str]) -> list[str]:
    return [f"{title:<12}{row}" if i == 0 else f"{'':<12}{row}"
            for i, row in enumerate(rows or ["none"])]
