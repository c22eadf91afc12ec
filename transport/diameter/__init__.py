"""Diameter for the S-CSCF: an asyncio peer layer (RFC 6733, RFC 3539 watchdog) over
python-diameter's AVP codec, the Cx application, realm routing with failover, and an HSS emulator.

    codec        framing, validation, AVP helpers     base        CER/DWR/DPR, error answers
    connection   one connection's state machine       peer        DiameterPeer, DiameterServer
    cx*          Cx commands and result codes         router      CxClient
    hss_*        the HSS emulator, its config, subscribers and admin interface
"""
from .base import DisconnectCause, LocalNode, PeerInfo
from .connection import DiameterConnection, RequestHandler
from .cx import *  # noqa: F401,F403 (the Cx API is listed in cx.__all__)
from .cx import __all__ as _cx_names
from .errors import DiameterError, DiameterTimeout, PeerDown, ProtocolError
from .hss_config import HssConfig, HssConfigError, SubscriberConfig
from .hss_emulator import HssEmulator, HssError, NotConnected, UnknownSubscriber
from .peer import DiameterPeer, DiameterServer
from .router import CxClient, CxUnavailable

__all__ = [
    *_cx_names,
    "DisconnectCause", "LocalNode", "PeerInfo", "DiameterConnection", "RequestHandler",
    "DiameterError", "DiameterTimeout", "PeerDown", "ProtocolError",
    "DiameterPeer", "DiameterServer", "CxClient", "CxUnavailable",
    "HssConfig", "HssConfigError", "SubscriberConfig", "HssEmulator", "HssError",
    "NotConnected", "UnknownSubscriber",
]
