"""The one exception the SIP parser raises: it carries the response a server should send."""


class SipParseError(Exception):
    """A message (or a header of it) that does not follow the grammar of RFC 3261.

    `status` and `reason` form the status line a server answers a broken request with
    (400 Bad Request with a precise reason phrase, 505 for a foreign version, 513 when too large).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


# What Python raises when malformed input slips past a check: turned into SipParseError(400).
MALFORMED_INPUT_ERRORS = (ValueError, IndexError, KeyError, UnicodeError, OverflowError)
