"""The Cx application (TS 29.228 / 29.229): enums, request and answer data classes, codecs.

One import point for the registrar; the definitions live in `cx_base` (types and shared AVPs),
`cx_scscf` (SAR, MAR) and `cx_hss` (RTR, PPR).
"""
from .codec import CX_APPLICATION_ID, VENDOR_3GPP, Command, ResultCode
from .cx_base import (
                      AnswerOutcome,
                      CxResult,
                      DeregistrationReasonCode,
                      MaaResult,
                      MarRequest,
                      PpaResult,
                      PprRequest,
                      RtaResult,
                      RtrRequest,
                      SaaResult,
                      SarRequest,
                      ServerAssignmentType,
                      SipAuthItem,
                      describe_result,
)
from .cx_hss import (
                      decode_ppa,
                      decode_ppr,
                      decode_rta,
                      decode_rtr,
                      encode_ppa,
                      encode_ppr,
                      encode_rta,
                      encode_rtr,
)
from .cx_scscf import (
                      decode_maa,
                      decode_mar,
                      decode_saa,
                      decode_sar,
                      encode_maa,
                      encode_mar,
                      encode_saa,
                      encode_sar,
)

__all__ = [
    "CX_APPLICATION_ID", "VENDOR_3GPP", "Command", "ResultCode", "CxResult",
    "ServerAssignmentType", "DeregistrationReasonCode", "AnswerOutcome", "describe_result",
    "SarRequest", "SaaResult", "MarRequest", "MaaResult", "SipAuthItem",
    "RtrRequest", "RtaResult", "PprRequest", "PpaResult",
    "encode_sar", "decode_sar", "encode_saa", "decode_saa",
    "encode_mar", "decode_mar", "encode_maa", "decode_maa",
    "encode_rtr", "decode_rtr", "encode_rta", "decode_rta",
    "encode_ppr", "decode_ppr", "encode_ppa", "decode_ppa",
]
