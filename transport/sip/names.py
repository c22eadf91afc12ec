"""Header names: canonical spelling, compact forms (RFC 3261 7.3.3 and later RFCs) and the
headers whose value is a comma-separated list."""

_CANONICAL = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE",
    "Organization", "P-Access-Network-Info", "P-Asserted-Identity", "P-Associated-URI",
    "P-Called-Party-ID", "P-Charging-Function-Addresses", "P-Charging-Vector",
    "P-Preferred-Identity", "P-Visited-Network-ID", "Path", "Priority", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "Reason", "Record-Route", "Refer-To", "Referred-By",
    "Reject-Contact", "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route",
    "RSeq", "Security-Client", "Security-Server", "Security-Verify", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)
_COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By",
    "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition", "y": "Identity", "n": "Identity-Info",
}
# Headers whose grammar is a comma list of elements (Authorization & co. are not: their
# commas separate auth-params).
LIST_HEADERS = frozenset(name.lower() for name in (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
    "In-Reply-To", "P-Asserted-Identity", "P-Associated-URI", "P-Preferred-Identity",
    "P-Visited-Network-ID", "Path", "Proxy-Require", "Reason", "Record-Route", "Reject-Contact",
    "Request-Disposition", "Require", "Route", "Security-Client", "Security-Server",
    "Security-Verify", "Service-Route", "Supported", "Unsupported", "Via", "Warning",
))

# Any spelling we know (canonical, lower case, compact in either case) -> (canonical, key);
# the key (lower-case long form) indexes a message's headers.
KNOWN: dict[str, tuple[str, str]] = {
    spelling: (name, name.lower()) for name in _CANONICAL for spelling in (name, name.lower())
}
KNOWN.update({
    spelling: KNOWN[name] for letter, name in _COMPACT.items()
    for spelling in (letter, letter.upper())
})


def spelling(name: str) -> tuple[str, str]:
    """(canonical name, key) of a header name; an unknown name keeps its spelling."""
    return KNOWN.get(name) or KNOWN.get(name.lower()) or (name, name.lower())


def header_key(name: str) -> str:
    """The case-insensitive, compact-form-insensitive key of a header name."""
    known = KNOWN.get(name)
    return known[1] if known else spelling(name)[1]
