"""Charging headers of a registration (TS 24.229 5.4.1.2.2, RFC 7315): the charging function
addresses an SAA names, and the icid of a REGISTER's P-Charging-Vector (pure)."""
from __future__ import annotations

# Charging-Information AVPs (transport/diameter/cx_base.py) as P-Charging-Function-Addresses
# parameters, in the order the header lists them: collection functions, then event functions,
# each primary before secondary.
_PARAMETERS = (
    ("ccf", "primary_charging_collection_function_name"),
    ("ccf", "secondary_charging_collection_function_name"),
    ("ecf", "primary_event_charging_function_name"),
    ("ecf", "secondary_event_charging_function_name"),
)


def charging_addresses(info: dict | None) -> tuple[tuple[str, str], ...]:
    """(ccf|ecf, address) pairs of an SAA's Charging-Information; () without one. A quote or
    backslash in an address (it cannot be quoted safely) leaves that address out."""
    if not info:
        return ()
    return tuple((kind, info[key]) for kind, key in _PARAMETERS
                 if info.get(key) and not any(c in info[key] for c in '"\\\r\n'))


def icid(vector: str | None) -> str | None:
    """The icid-value of a P-Charging-Vector (RFC 7315 4.6), quotes removed; None without."""
    if not vector:
        return None
    for param in vector.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "icid-value":
            return value.strip().strip('"') or None
    return None
