"""Lexical pieces of RFC 3261 section 25.1 shared by the URI, header and start-line parsers.

Repetitions are possessive and alternatives disjoint, so hostile input cannot make a pattern
backtrack; whitespace is only SP and HTAB, never Python's wider `\\s`.
"""
import re

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = f"[{TOKEN_CHARS}]++"
# quoted-string: quoted-pair is a backslash and any one character but CR or LF.
# Repeated groups sit in atomic groups, (?>(?:...)*), rather than taking a possessive
# quantifier, (?:...)*+: both forbid backtracking, but Debian 12's Python 3.11.2 mis-matches
# the latter (it accepted ";" alone as a URI parameter list).
QUOTED = r'"[^"\\\r\n]*+(?>(?:\\[^\r\n][^"\\\r\n]*+)*)"'
HEX2 = "%[0-9A-Fa-f]{2}"
UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()")

is_token = re.compile(TOKEN).fullmatch

_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_NEEDS_QUOTED_PAIR = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def unquote(value: str | None) -> str | None:
    """The text of a quoted-string (quotes removed, quoted-pairs resolved); other values as is."""
    if value is None or len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    inner = value[1:-1]
    return _QUOTED_PAIR.sub(r"\1", inner) if "\\" in inner else inner


def quote(text: str) -> str:
    """`text` as a quoted-string, escaping what qdtext cannot hold."""
    return '"' + _NEEDS_QUOTED_PAIR.sub(lambda m: "\\" + m.group(), text) + '"'
