"""Exceptions raised by the Diameter layer."""


class DiameterError(Exception):
    """Base class of every Diameter failure."""


class PeerDown(DiameterError):
    """The connection to the peer is not open, or dropped while a request was pending."""


class DiameterTimeout(DiameterError):
    """No answer arrived within the request timeout."""


class ProtocolError(DiameterError):
    """A message broke RFC 6733 framing or grammar.

    `result_code` is what the answer to the offending request carries; `fatal` means the byte
    stream can no longer be trusted and the connection must be closed after answering.
    """

    def __init__(self, result_code: int, message: str, *, failed_avp: bytes | None = None,
                 fatal: bool = False, session_id: str | None = None):
        super().__init__(message)
        self.result_code = int(result_code)
        self.failed_avp = failed_avp
        self.fatal = fatal
        self.session_id = session_id
