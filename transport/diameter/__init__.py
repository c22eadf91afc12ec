"""Diameter for the S-CSCF: an asyncio peer layer (RFC 6733, RFC 3539 watchdog) over
python-diameter's AVP codec, the Cx application with the IMS user-data model, and realm routing
with failover.

    codec        framing, validation, AVP helpers     base        CER/DWR/DPR, error answers
    connection   one connection's state machine       peer        DiameterPeer, DiameterServer
    cx*          Cx commands and result codes         router      CxClient
    user_data    the Cx User-Data XML (TS 29.228 annex D)
"""
from .base import DisconnectCause, LocalNode, PeerInfo
from .connection import DiameterConnection, RequestHandler
from .cx import *  # noqa: F401,F403 (the Cx API is listed in cx.__all__)
from .cx import __all__ as _cx_names
from .errors import DiameterError, DiameterTimeout, PeerDown, ProtocolError
from .peer import DiameterPeer, DiameterServer
from .router import CxClient, CxUnavailable

__all__ = [
    *_cx_names,
    "DisconnectCause", "LocalNode", "PeerInfo", "DiameterConnection", "RequestHandler",
    "DiameterError", "DiameterTimeout", "PeerDown", "ProtocolError",
    "DiameterPeer", "DiameterServer", "CxClient", "CxUnavailable",
]
