"""The configuration file: pydantic models, one per section, unknown keys refused.

``load(path)`` returns validated :class:`Settings`; every problem becomes one :class:`ConfigError` line that
names the file and the dotted key. Relative paths are resolved against the config file's directory (or the
working directory when the built-in defaults apply).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from blockdns.errors import ConfigError, InvalidName
from blockdns.logstore import check_postgres_url, store_kind
from blockdns.names import normalise
from blockdns.tomlfile import read_toml, schema_problems
from blockdns.trustanchors import IANA_ROOT_ANCHORS, parse_anchors

DEFAULT_CONFIG_NAME = "blockdns.toml"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """Split ``IP``, ``IP:PORT``, ``[IPv6]`` or ``[IPv6]:PORT``; the address must be a literal IP."""
    host, port = text.strip(), default_port
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            raise ValueError(f"missing ']' in {text!r}")
        rest = host[end + 1 :]
        host = host[1:end]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected {rest!r} after ']' in {text!r}")
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, port_text = host.split(":")
        port = _port(port_text, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (optionally with :port)") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"bad port in {whole!r}")
    return int(text)


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str | int | float) -> float:
    """``"90s"``, ``"5m"``, ``"24h"``, ``"1d12h"``, a bare number of seconds, or ``"0"``."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    value = text.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    match = _DURATION.fullmatch(value)
    if not value or not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 5m, 24h or 1d")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenAddress(BaseModel):
    model_config = ConfigDict(frozen=True)
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _networks(values: list[str]) -> list[Network]:
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values]


# The port of a [server] listen entry that names none: plain DNS, DNS over TLS, DNS over HTTPS.
_DEFAULT_PORTS = {"listen": 53, "tls_listen": 853, "https_listen": 443}


def _listen_addresses(values: list[str], default_port: int) -> list[ListenAddress]:
    return [
        ListenAddress(host=host, port=port)
        for host, port in (parse_host_port(v, default_port) for v in values)
    ]


class ServerSettings(Section):
    listen: list[str] = ["127.0.0.1:1053", "[::1]:1053"]
    allow_clients: list[str] = [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    tcp_idle_timeout: float = Field(10.0, gt=0)
    tcp_max_connections: int = Field(256, ge=1)
    tcp_max_per_client: int = Field(16, ge=1)  # open TCP connections per client address
    max_inflight: int = Field(4096, ge=1)  # slow-path queries being resolved at once; more are dropped
    # Processes sharing the listening sockets (SO_REUSEPORT) under a supervisor; "auto": one per usable core.
    workers: int | Literal["auto"] = 1
    # Encrypted DNS for clients (issue 11): DNS over TLS (RFC 7858) and over HTTPS (RFC 8484, /dns-query).
    tls_listen: list[str] = []  # "IP:PORT" (853 when no port is given)
    https_listen: list[str] = []  # "IP:PORT" (443 when no port is given)
    tls_cert: str = ""  # PEM certificate chain for both; required when either list is set
    tls_key: str = ""  # PEM private key
    trusted_proxies: list[str] = []  # CIDRs whose X-Forwarded-For / Forwarded header names the DoH client

    @field_validator("listen", "tls_listen", "https_listen")
    @classmethod
    def _check_listen(cls, values: list[str], info: ValidationInfo) -> list[str]:
        for value in values:
            parse_host_port(value, _DEFAULT_PORTS[str(info.field_name)])
        return values

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, values: list[str]) -> list[str]:
        _networks(values)
        return values

    @model_validator(mode="after")
    def _check_tls_files(self) -> ServerSettings:
        if (self.tls_listen or self.https_listen) and not (self.tls_cert and self.tls_key):
            raise ValueError("tls_listen and https_listen need tls_cert and tls_key (PEM files)")
        return self

    def tls_addresses(self) -> list[ListenAddress]:
        return _listen_addresses(self.tls_listen, _DEFAULT_PORTS["tls_listen"])

    def https_addresses(self) -> list[ListenAddress]:
        return _listen_addresses(self.https_listen, _DEFAULT_PORTS["https_listen"])

    def proxy_networks(self) -> list[Network]:
        return _networks(self.trusted_proxies)

    @field_validator("allow_clients")
    @classmethod
    def _check_clients(cls, values: list[str]) -> list[str]:
        _networks(values)
        return values

    @field_validator("workers", mode="before")
    @classmethod
    def _check_workers(cls, value: object) -> object:
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError('a whole number of processes, at least 1, or "auto"')

    def worker_count(self) -> int:
        """How many worker processes to run (1: the single-process server, no supervisor)."""
        if self.workers == "auto":
            if hasattr(os, "sched_getaffinity"):  # the cores this process may run on (taskset, cgroups)
                return max(1, len(os.sched_getaffinity(0)))
            return os.cpu_count() or 1
        return self.workers

    def listen_addresses(self) -> list[ListenAddress]:
        return _listen_addresses(self.listen, _DEFAULT_PORTS["listen"])

    def allowed_networks(self) -> list[Network]:
        return _networks(self.allow_clients)


_UPSTREAM = re.compile(r"(udp|tcp)://(.+)")
_ENCRYPTED_PORTS = {"tls": 853, "https": 443}
_UPSTREAM_FORMS = (
    "udp://IP[:PORT], tcp://IP[:PORT], tls://HOST[:PORT][#TLS-NAME] or https://HOST[:PORT]/PATH[#TLS-NAME]"
)


class Upstream(BaseModel):
    """One upstream server. ``host`` is an IP address, or (tls, https) a name resolved through
    ``[resolver] bootstrap``; ``tls_name`` is the name its certificate must carry ("": the host itself)."""

    model_config = ConfigDict(frozen=True)
    protocol: Literal["udp", "tcp", "tls", "https"]
    host: str
    port: int
    tls_name: str = ""
    path: str = ""  # https: the DoH path, "/dns-query"

    @property
    def host_is_name(self) -> bool:
        return not _is_ip(self.host)

    @property
    def verify_name(self) -> str:
        """The name (or IP address) the upstream's certificate must carry."""
        return self.tls_name or self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        name = f"#{self.tls_name}" if self.tls_name else ""
        return f"{self.protocol}://{host}:{self.port}{self.path}{name}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host_name(text: str, whole: str) -> str:
    try:
        return normalise(text)
    except InvalidName:
        raise ValueError(f"{whole!r}: {text!r} is neither an IP address nor a host name") from None


def parse_upstream(text: str) -> Upstream:
    value = text.strip()
    match = _UPSTREAM.fullmatch(value)
    if match:
        host, port = parse_host_port(match.group(2), 53)
        return Upstream(protocol=match.group(1), host=host, port=port)  # type: ignore[arg-type]
    scheme = value.partition("://")[0]
    if scheme not in _ENCRYPTED_PORTS or "://" not in value:
        raise ValueError(f"{text!r}: an upstream is {_UPSTREAM_FORMS}")
    rest, _, tls_name = value.partition("#")
    try:
        parts = urlsplit(rest)
        port = parts.port or _ENCRYPTED_PORTS[scheme]
    except ValueError as err:
        raise ValueError(f"{text!r}: {err}") from None
    if not parts.hostname or parts.username is not None or parts.query or parts.fragment:
        raise ValueError(f"{text!r}: an upstream is {_UPSTREAM_FORMS}")
    host = parts.hostname if _is_ip(parts.hostname) else _host_name(parts.hostname, text)
    if scheme == "tls" and parts.path:
        raise ValueError(f"{text!r}: a tls:// upstream has no path")
    if scheme == "https" and not parts.path.startswith("/"):
        raise ValueError(f"{text!r}: an https:// upstream needs its path, e.g. /dns-query")
    if tls_name:
        tls_name = _host_name(tls_name, text)
    return Upstream(protocol=scheme, host=host, port=port, tls_name=tls_name, path=parts.path)  # type: ignore[arg-type]


class ResolverSettings(Section):
    mode: Literal["recursive", "forward"] = "recursive"
    upstreams: list[str] = ["udp://9.9.9.9:53"]
    root_hints: list[str] = []
    timeout: float = Field(2.0, gt=0, description="per-try timeout towards one upstream or server")
    total_timeout: float = Field(10.0, gt=0, description="time budget for resolving one query")
    qname_minimisation: bool = True
    ipv6: bool = True  # recursive mode: also talk to authoritative servers over IPv6
    # DNSSEC (issue 10): None is the default, "validate" in recursive mode and "off" in forward mode.
    dnssec: Literal["validate", "off"] | None = None
    trust_anchors: list[str] = []  # DS/DNSKEY lines; empty: the IANA root KSKs (with the built-in hints)
    negative_trust_anchors: list[str] = []  # zones whose answers are not validated (RFC 7646)

    @field_validator("trust_anchors")
    @classmethod
    def _check_anchors(cls, values: list[str]) -> list[str]:
        parse_anchors(values)
        return values

    @field_validator("negative_trust_anchors")
    @classmethod
    def _check_negative_anchors(cls, values: list[str]) -> list[str]:
        return [_check_zone_name(value) for value in values]

    bootstrap: list[str] = []  # "IP[:PORT]" plain-DNS servers for upstream host names; []: the system's
    tls_ca: str = ""  # PEM bundle that tls:// and https:// upstreams' certificates must chain to; "": system

    @field_validator("bootstrap", "root_hints")
    @classmethod
    def _check_servers(cls, values: list[str]) -> list[str]:
        for value in values:
            parse_host_port(value, 53)
        return values

    def bootstrap_addresses(self) -> list[tuple[str, int]]:
        return [parse_host_port(value, 53) for value in self.bootstrap]

    @field_validator("upstreams")
    @classmethod
    def _check_upstreams(cls, values: list[str]) -> list[str]:
        for value in values:
            parse_upstream(value)
        return values

    @model_validator(mode="after")
    def _forward_needs_upstreams(self) -> ResolverSettings:
        if self.mode == "forward" and not self.upstreams:
            raise ValueError("forward mode needs at least one upstream")
        return self

    def upstream_list(self) -> list[Upstream]:
        return [parse_upstream(value) for value in self.upstreams]

    def validating(self) -> bool:
        """Whether answers are to be validated: ``dnssec`` as set, else on in recursive mode only. (With
        custom root hints and no trust anchors, the recursive resolver still has nothing to validate
        against: see :meth:`anchor_lines`.)"""
        if self.dnssec is None:
            return self.mode == "recursive"
        return self.dnssec == "validate"

    def anchor_lines(self) -> tuple[str, ...]:
        """The trust anchors to validate against: the configured ones, else the IANA root keys when the
        root is the real one; empty (nothing to validate against) for a private root without anchors."""
        if self.trust_anchors:
            return tuple(self.trust_anchors)
        return () if self.root_hints else IANA_ROOT_ANCHORS

    def root_hint_addresses(self) -> list[tuple[str, int]]:
        return [parse_host_port(value, 53) for value in self.root_hints]


class CacheSettings(Section):
    max_entries: int = Field(100_000, ge=0)
    min_ttl: int = Field(0, ge=0)
    max_ttl: int = Field(86_400, ge=0)
    negative_max_ttl: int = Field(3600, ge=0)  # RFC 2308 suggests 1-3 hours at most
    serve_stale: bool = True  # RFC 8767: expired data answers (TTL 30, EDE 3) when resolution fails
    stale_max_age: str = "1d"  # how long after expiry data is kept for that
    prefetch: bool = True  # a name asked again in the last tenth of its TTL is refreshed in the background

    @field_validator("stale_max_age")
    @classmethod
    def _check_stale_max_age(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _order(self) -> CacheSettings:
        if self.min_ttl > self.max_ttl:
            raise ValueError("min_ttl is larger than max_ttl")
        return self

    def stale_seconds(self) -> float:
        """How long expired data is kept to be answered stale: 0 when serve-stale is off."""
        return parse_duration(self.stale_max_age) if self.serve_stale else 0.0


BlockResponse = Literal["nxdomain", "null", "nodata", "refused", "custom"]


class BlockingSettings(Section):
    response: BlockResponse = "nxdomain"
    custom_ipv4: ipaddress.IPv4Address = ipaddress.IPv4Address("0.0.0.0")
    custom_ipv6: ipaddress.IPv6Address = ipaddress.IPv6Address("::")
    ttl: int = Field(300, ge=0, le=2_147_483_647)
    bypass_protection: bool = True


def _check_selectors(values: list[str]) -> list[str]:
    # Imported here: policy imports config for its types.
    from blockdns.errors import SelectorError
    from blockdns.policy import parse_selector

    seen: dict[str, str] = {}
    for value in values:
        try:
            selector = str(parse_selector(value))
        except SelectorError as err:
            raise ValueError(str(err)) from None
        if selector in seen:
            # Harmless to the policy, but almost always a mistake (a merge, a copy-paste): say so.
            raise ValueError(f"{value!r} is listed twice (also as {seen[selector]!r})")
        seen[selector] = value
    return values


class PolicySettings(Section):
    # Every AI vendor, and the encrypted-DNS resolvers a client could use to get around this resolver.
    block: list[str] = ["all", "category:bypass"]
    allow: list[str] = []

    _block = field_validator("block")(_check_selectors)
    _allow = field_validator("allow")(_check_selectors)


class GroupSettings(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    clients: list[str] = []
    # Encrypted-DNS client IDs (/dns-query/NAME, DoT SNI NAME.<server name>); a match beats a CIDR match.
    client_ids: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,63}$")]] = []
    block: list[str] = []
    allow: list[str] = []

    @model_validator(mode="after")
    def _check_members(self) -> GroupSettings:
        if not self.clients and not self.client_ids:
            raise ValueError("a group needs clients (CIDRs) or client_ids")
        return self

    @field_validator("clients")
    @classmethod
    def _check_clients(cls, values: list[str]) -> list[str]:
        _networks(values)
        return values

    _block = field_validator("block")(_check_selectors)
    _allow = field_validator("allow")(_check_selectors)

    def networks(self) -> list[Network]:
        return _networks(self.clients)


class ListsSettings(Section):
    catalog: Path | None = None  # vendor files; None: the catalogue shipped with the package
    guard: Path | None = None  # names never blocked wholesale; None: guard.toml beside the catalogue
    feeds: Path | None = None  # feed definitions; None: the ones shipped with the package
    data_dir: Path = Path("var/lists")
    refresh: str = "24h"

    @field_validator("refresh")
    @classmethod
    def _check_refresh(cls, value: str) -> str:
        parse_duration(value)
        return value

    def refresh_seconds(self) -> float:
        return parse_duration(self.refresh)


class QueryLogSettings(Section):
    path: str = "var/querylog.sqlite"
    retention_days: int = Field(30, ge=0)
    clients: Literal["full", "hash", "none"] = "full"
    queue_size: int = Field(50_000, ge=1)  # rows waiting for the writer; more are dropped and counted
    max_rows: int = Field(10_000_000, ge=0)  # the oldest rows go first past this; 0: no cap (retention alone)
    replica: str = Field("", max_length=64)  # this server's name in a shared log; empty: the host's name

    @field_validator("path")
    @classmethod
    def _check_store(cls, value: str) -> str:
        if store_kind(value) == "postgresql":
            check_postgres_url(value)
        return value

    def is_postgres(self) -> bool:
        return bool(self.path) and store_kind(self.path) == "postgresql"


def _check_redis_url(value: str) -> str:
    """``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`` (``rediss://`` for TLS). Messages never repeat the URL:
    it may carry a password."""
    text = value.strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("must be a redis://HOST:PORT/DB URL (or rediss:// for TLS)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port in the URL is not a number from 0 to 65535") from None
    if not parts.hostname or port == 0:
        raise ValueError("the URL names no host (or port 0): redis://HOST:PORT/DB")
    database = parts.path.strip("/")
    if parts.query or parts.fragment or (database and not database.isdigit()):
        raise ValueError("the URL's path must be a database number (redis://HOST:PORT/0), nothing after it")
    return text


class ClusterSettings(Section):
    """Replicas sharing state through Redis (blockdns.ops.cluster); empty: this server stands alone."""

    redis: Annotated[str, AfterValidator(_check_redis_url)] = ""


class ApiSettings(Section):
    listen: str = "127.0.0.1:8053"
    token: str = ""
    # Extra Host header values the API answers (ops/httpaccess.py): names, ".example.org" for a domain and
    # every name below it. IP literals and localhost are always accepted.
    allowed_hosts: list[str] = []
    read_token: bool = False  # reads need the token too (always so when `listen` is not loopback)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value:
            parse_host_port(value, 8053)
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, values: list[str]) -> list[str]:
        checked = []
        for value in values:
            if "*" in value:
                raise ValueError(f"{value!r}: write .example.org for a domain and every name below it")
            dot = "." if value.strip().startswith(".") else ""
            try:
                checked.append(dot + normalise(value.strip()[len(dot) :]))
            except InvalidName as err:
                raise ValueError(f"{err}: give a host name, or .domain for it and the names below") from None
        return checked

    def address(self) -> tuple[str, int] | None:
        return parse_host_port(self.listen, 8053) if self.listen else None


def _check_record(text: str) -> str:
    # Imported here: localdata reads zone-file syntax with dnspython, which only a config with records needs.
    from blockdns.localdata import check_record_text

    return check_record_text(text)


class LocalSettings(Section):
    """Local names: the administrator's own records, answered authoritatively (see blockdns.localdata)."""

    records: list[Annotated[str, AfterValidator(_check_record)]] = []  # zone-file lines
    hosts_files: list[Path] = []  # /etc/hosts-style files, reloaded when they change
    private_reverse: bool = True  # RFC 6303 reverse zones answered here unless a forward zone covers them


def _check_upstream_list(values: list[str]) -> list[str]:
    for value in values:
        parse_upstream(value)
    return values


def _check_zone_name(value: str) -> str:
    from blockdns.errors import InvalidName
    from blockdns.names import normalise

    try:
        return normalise(value)
    except InvalidName as err:
        raise ValueError(str(err)) from None


class ForwardZoneSettings(Section):
    """Conditional forwarding: names at and below ``name`` go to ``upstreams``, in either resolver mode."""

    name: Annotated[str, AfterValidator(_check_zone_name)]
    upstreams: list[str] = Field(min_length=1)
    dnssec: bool = True  # false: an internal unsigned zone that validation must not fail (issue 10)

    _upstreams = field_validator("upstreams")(_check_upstream_list)

    def upstream_list(self) -> list[Upstream]:
        return [parse_upstream(value) for value in self.upstreams]


class RateLimitSettings(Section):
    """Answers per second per client prefix over UDP (the limiter: blockdns.server.ratelimit)."""

    client_qps: int = Field(0, ge=0)  # 0 turns the limiter off
    burst: int = Field(0, ge=0)  # extra answers in a burst; 0 means client_qps
    ipv4_prefix: int = Field(24, ge=0, le=32)
    ipv6_prefix: int = Field(56, ge=0, le=128)
    slip: int = Field(2, ge=0)  # every slip-th limited query gets a truncated reply; 0: all dropped
    exempt: list[str] = []  # our addition to the contract: CIDRs never limited

    @field_validator("exempt")
    @classmethod
    def _check_exempt(cls, values: list[str]) -> list[str]:
        _networks(values)
        return values

    def exempt_networks(self) -> list[Network]:
        return _networks(self.exempt)

    @property
    def capacity(self) -> int:
        """Answers a full bucket holds: the steady rate plus the burst (``burst = 0`` means one second's)."""
        return self.client_qps + (self.burst or self.client_qps)


class Settings(Section):
    server: ServerSettings = ServerSettings()
    resolver: ResolverSettings = ResolverSettings()
    cache: CacheSettings = CacheSettings()
    blocking: BlockingSettings = BlockingSettings()
    policy: PolicySettings = PolicySettings()
    groups: list[GroupSettings] = []
    lists: ListsSettings = ListsSettings()
    querylog: QueryLogSettings = QueryLogSettings()
    api: ApiSettings = ApiSettings()
    cluster: ClusterSettings = ClusterSettings()
    local: LocalSettings = LocalSettings()
    forward_zones: list[ForwardZoneSettings] = []
    ratelimit: RateLimitSettings = RateLimitSettings()
    # Where this came from: the file, or None for built-in defaults. Not a TOML key.
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_groups(self) -> Settings:
        names = [group.name for group in self.groups]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"group names must be unique, repeated: {', '.join(duplicates)}")
        ids = [client_id.lower() for group in self.groups for client_id in group.client_ids]
        repeated = sorted({client_id for client_id in ids if ids.count(client_id) > 1})
        if repeated:
            raise ValueError(f"a client ID belongs to one group, repeated: {', '.join(repeated)}")
        return self

    @field_validator("forward_zones")
    @classmethod
    def _unique_zones(cls, zones: list[ForwardZoneSettings]) -> list[ForwardZoneSettings]:
        names = [zone.name for zone in zones]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"forward zone names must be unique, repeated: {', '.join(repeated)}")
        return zones

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def resolve_path(self, path: Path | str) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def tls_ca_path(self) -> Path | None:
        return self.resolve_path(self.resolver.tls_ca) if self.resolver.tls_ca else None

    def hosts_paths(self) -> list[Path]:
        return [self.resolve_path(path) for path in self.local.hosts_files]

    def querylog_path(self) -> Path | None:
        """The SQLite file of the query log; None when the log is off or is a PostgreSQL database."""
        if not self.querylog.path or self.querylog.is_postgres():
            return None
        return self.resolve_path(self.querylog.path)


def load(path: Path | str | None = None) -> Settings:
    """Load and validate a config file; without a path, ``./blockdns.toml`` if present, else defaults."""
    if path is None:
        candidate = Path.cwd() / DEFAULT_CONFIG_NAME
        if not candidate.exists():
            return Settings()
        path = candidate
    path = Path(path)
    raw = read_toml(path)
    return from_dict(raw, source=path.resolve())


def from_dict(raw: dict, *, source: Path | None = None) -> Settings:
    try:
        return Settings.model_validate({**raw, "source": source})
    except ValidationError as err:
        raise _first_error(err, source) from None


def _first_error(err: ValidationError, source: Path | None) -> ConfigError:
    key, message = schema_problems(err)[0]
    return ConfigError(message, file=str(source) if source else "<defaults>", key=key)
