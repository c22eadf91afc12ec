"""SIP core, sans-I/O (bytes in, objects out) except for `endpoints`."""
from .errors import SipParseError
from .framing import PING, KeepAlive, StreamFramer
from .headers import (
                      STAR,
                      NameAddr,
                      Via,
                      parse_contacts,
                      parse_cseq,
                      parse_int_header,
                      parse_name_addr,
                      parse_params,
                      parse_via,
                      split_header_values,
)
from .message import Headers, Request, Response, make_response
from .parser import parse_head, parse_message
from .rejection import error_response
from .transaction import (
                      Final,
                      NonInviteClientTransaction,
                      NonInviteServerTransaction,
                      Provisional,
                      Retransmit,
                      Terminated,
                      Timeout,
                      TransactionKey,
)
from .uri import SipUri, parse_uri, unescape, uri_equal

__all__ = [
    "SipParseError", "PING", "KeepAlive", "StreamFramer", "STAR", "NameAddr", "Via",
    "parse_contacts", "parse_cseq", "parse_int_header", "parse_name_addr", "parse_params",
    "parse_via", "split_header_values", "Headers", "Request", "Response", "make_response",
    "parse_head", "parse_message", "error_response", "Final", "NonInviteClientTransaction",
    "NonInviteServerTransaction", "Provisional", "Retransmit", "Terminated", "Timeout",
    "TransactionKey", "SipUri", "parse_uri", "unescape", "uri_equal",
]
