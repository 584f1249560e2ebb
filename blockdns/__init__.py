"""blockdns: a recursive, caching DNS resolver that blocks AI services by policy."""

__version__ = "0.1.0"
