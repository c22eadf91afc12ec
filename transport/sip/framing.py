"""Cutting a SIP byte stream (TCP, TLS) into messages (RFC 3261 18.3, RFC 5626 4.4.1).

On a stream the Content-Length header is mandatory: it is the only way to find where a
message ends. A framing error leaves the stream unusable; the connection must be closed.
"""
from __future__ import annotations

import re

from .errors import SipParseError

# A Content-Length line, after the LF that ends the line before it (the search skips from
# LF to LF, where a '^' would be tried at every byte).
_CONTENT_LENGTH = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)",
                             re.IGNORECASE)
_DIGITS = re.compile(rb"[0-9]{1,10}").fullmatch
_DOUBLE_CRLF = b"\r\n\r\n"


class KeepAlive:
    """A CRLFCRLF ping (RFC 5626 4.4.1): answer it with a single CRLF pong."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PING"


PING = KeepAlive()


class StreamFramer:
    def __init__(self, max_size: int = 65535) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._scanned = 0  # how far the buffer is known to hold no end of headers

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """Every complete message (as raw bytes) and ping that `data` completes, in order."""
        buffer = self._buffer
        buffer += data
        out: list[bytes | KeepAlive] = []
        while buffer:
            if buffer[0] in b"\r\n":
                if buffer.startswith(_DOUBLE_CRLF):
                    out.append(PING)
                    del buffer[:4]
                elif _DOUBLE_CRLF.startswith(buffer):
                    break  # maybe the start of a ping: wait for more
                else:  # a lone CRLF (a pong, or noise) between messages
                    del buffer[:2 if buffer.startswith(b"\r\n") else 1]
                continue
            end = buffer.find(_DOUBLE_CRLF, max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(buffer)
                if len(buffer) > self.max_size:
                    raise SipParseError(513, "Message Too Large")
                break
            size = end + 4 + self._content_length(bytes(buffer[:end]))
            if size > self.max_size:
                raise SipParseError(513, "Message Too Large")
            if len(buffer) < size:
                self._scanned = end
                break
            out.append(bytes(buffer[:size]))
            del buffer[:size]
            self._scanned = 0
        return out

    @property
    def pending(self) -> bytes:
        """The bytes not framed yet (after a framing error: what to build the 400 from)."""
        return bytes(self._buffer)

    @staticmethod
    def _content_length(head: bytes) -> int:
        values = _CONTENT_LENGTH.findall(b"\n" + head)
        if not values:
            raise SipParseError(400, "Missing Content-Length")
        if len(values) > 1:
            raise SipParseError(400, "Multiple Content-Length")
        value = values[0].strip(b" \t")
        if _DIGITS(value) is None:
            raise SipParseError(400, "Bad Content-Length")
        return int(value)
