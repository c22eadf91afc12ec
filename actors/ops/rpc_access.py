"""Who may call the JSON-RPC: a bearer token from ``[rpc]``, no browser page of another origin,
JSON bodies only.

The token is ``[rpc] token`` when given, else the content of ``[rpc] token_file``, which the
first ``scscf serve`` creates (mode 0600) with a random token; ``scscf rpc`` reads the same
file through the same config. A page in a browser cannot learn the token, and a cross-origin
form or ``text/plain`` post (the requests a browser sends without a CORS preflight) is refused
before the token is looked at.
"""
from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlsplit

from actors.config import RpcConfig

SCHEME = "Bearer"
JSON_TYPES = frozenset(("application/json", "application/json-rpc"))


class TokenFileError(Exception):
    """The token file cannot be created or is not safe to use; the message says why."""


def server_token(rpc: RpcConfig) -> str | None:
    """The token the server requires (None: ``require_token = false``), creating the token
    file on first start."""
    if not rpc.require_token:
        return None
    if rpc.token:
        return rpc.token
    path = Path(rpc.token_file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path, check_mode=True)
    except OSError as exc:
        raise TokenFileError(f"cannot create: {exc.strerror}") from exc
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def client_token(rpc: RpcConfig) -> str | None:
    """The token a client sends: the configured one, else the token file's (None: none)."""
    if rpc.token:
        return rpc.token
    try:
        return _read(Path(rpc.token_file), check_mode=False)
    except TokenFileError:
        return None


def _read(path: Path, check_mode: bool) -> str:
    try:
        if check_mode and stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise TokenFileError("readable by other users (chmod 600 it)")
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read: {getattr(exc, 'strerror', exc)}") from exc
    if not token:
        raise TokenFileError("empty")
    return token


def refusal(headers, token: str | None, own_origins: frozenset[str]) -> tuple[int, str] | None:
    """(HTTP status, reason) for a request that must not be served, None for one that may.

    ``headers``: the request's, case-insensitive; ``own_origins``: the listener's origins
    (``http://host:port``), the only ones a browser page may call from."""
    origin = headers.get("Origin")
    if origin is not None and origin.rstrip("/").lower() not in own_origins:
        return 403, f"cross-origin request refused (Origin {origin})"
    if token is not None:
        scheme, _, given = headers.get("Authorization", "").partition(" ")
        if scheme != SCHEME or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return 401, "missing or wrong token: send 'Authorization: Bearer TOKEN' ([rpc] token)"
    media = headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media not in JSON_TYPES:
        return 415, f"Content-Type must be application/json, not {media or 'none'}"
    return None


def origins(url: str) -> frozenset[str]:
    """The origins naming a listener at ``url``: as bound, and as localhost on loopback."""
    parts = urlsplit(url)
    names = {parts.hostname or ""}
    if names & {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::"}:
        names |= {"127.0.0.1", "::1", "localhost"}
    return frozenset(f"http://{n if ':' not in n else f'[{n}]'}:{parts.port}" for n in names)
