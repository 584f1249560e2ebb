"""A DNSSEC-signed hierarchy on loopback, made at test time: zones signed with BIND's ``dnssec-keygen`` and
``dnssec-signzone``, served by NSD (a real authoritative server, so RRSIGs, NSEC/NSEC3 proofs, wildcards
and DS at delegations are answered as the RFCs say, independently of the resolver under test).

    root .            127.A.B.1   ECDSA P-256, NSEC
    test.             127.A.B.2   ECDSA P-256, NSEC
    *.test. children  127.A.B.3   one NSD serving every zone below test. (see children() for what each holds)

Servers listen on port 53 (NS glue cannot carry a port). The resolver is pointed at the root with
``root_hints = [hierarchy.root]`` and ``trust_anchors = [hierarchy.anchor]`` (the root's DS).

127.A.B is picked at random among blocks whose addresses are free, and written into the zones' glue, so two
test runs at once (several worktrees on one machine) each get a hierarchy of their own. ``address(n)`` is
127.A.B.n, for Unbound and other helpers.
"""

from __future__ import annotations

import base64
import random
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from fakeauth import NET

TOOLS = ("nsd", "dnssec-keygen", "dnssec-signzone", "dnssec-dsfromkey")
UNBOUND_TOOLS = ("unbound", "unbound-checkconf")
KEYTRAP_FAKE_KEYS = 64  # DNSKEYs sharing the signing key's tag in keytrap.test.


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass
class Zone:
    origin: str  # "secure.test."
    records: str  # zone-file lines, names relative to the origin
    server: str
    algorithm: str | None = "ECDSAP256SHA256"  # None: unsigned
    sign_args: tuple[str, ...] = ()  # extra dnssec-signzone arguments (NSEC3, dates)
    nameserver: str = "ns2.test."
    children: list[Zone] = field(default_factory=list)
    ds_override: str | None = None  # a DS line to publish in the parent instead of the real one
    after_signing: object = None  # callable(text) -> text, applied to the signed zone file
    serve_unsigned: bool = False  # publish the DS, serve the zone without its signatures (stripped)


SECURE = """
www 300 IN A 192.0.2.1
www 300 IN TXT "secure"
*.wild 300 IN A 192.0.2.2
alias 300 IN CNAME www.insecure.test.
inalias 300 IN CNAME www
dn 300 IN DNAME target
a.target 300 IN A 192.0.2.3
"""

NSEC3 = """
www 300 IN A 192.0.2.10
*.wild 300 IN A 192.0.2.11
unsigned 300 IN NS ns2.test.
"""

PLAIN = """
www 300 IN A 192.0.2.20
"""

PLAIN3 = """
www 300 IN A 192.0.2.20
*.wild 300 IN A 192.0.2.21
"""

KEYTRAP = """
www 300 IN A 192.0.2.20
*.w 300 IN A 192.0.2.30
"""


def _alter_www(text: str) -> str:
    return text.replace("192.0.2.20", "192.0.2.99")


def _break_nsec_signatures(text: str) -> str:
    """Flip a byte of every RRSIG over an NSEC record (wildproof.test: forged proofs)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[3] == "RRSIG" and parts[4] == "NSEC":
            parts[-1] = ("A" if parts[-1][0] != "A" else "B") + parts[-1][1:]
            line = " ".join(parts)
        out.append(line)
    return "\n".join(out) + "\n"


def _raise_www_ttl(text: str) -> str:
    """Serve www's A record with TTL 86400 where it was signed with 300 (ttl.test: the RRSIG's original TTL
    still says 300, and the signature still verifies, since it covers the original TTL)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[0].startswith("www.") and parts[2:4] == ["IN", "A"]:
            parts[1] = "86400"
            line = " ".join(parts)
        out.append(line)
    return "\n".join(out) + "\n"


def _break_www_signature(text: str) -> str:
    """Flip a byte of every RRSIG over the A record at www (keytrap.test: all signatures broken)."""
    lines = text.splitlines()
    out = []
    for line in lines:
        parts = line.split()
        owner = parts[0] if parts else ""
        if len(parts) > 5 and owner.startswith(("www.", "*.w.")) and parts[3] == "RRSIG" and parts[4] == "A":
            signature = parts[-1]
            flipped = "A" if signature[0] != "A" else "B"
            parts[-1] = flipped + signature[1:]
            line = " ".join(parts)
        out.append(line)
    return "\n".join(out) + "\n"


def children(zones_server: str) -> list[Zone]:
    return [
        Zone("secure.test.", SECURE, zones_server),
        Zone(
            "nsec3.test.",
            NSEC3,
            zones_server,
            "RSASHA256",
            ("-3", "-", "-H", "0", "-A"),
            children=[Zone("unsigned.nsec3.test.", PLAIN, zones_server, None)],
        ),
        Zone("insecure.test.", PLAIN, zones_server, None),
        Zone("bogus.test.", PLAIN, zones_server, after_signing=_alter_www),
        Zone("expired.test.", PLAIN, zones_server, sign_args=("-s", "now-864000", "-e", "now-86400")),
        Zone("future.test.", PLAIN, zones_server, sign_args=("-s", "now+86400", "-e", "now+864000")),
        Zone("nokey.test.", PLAIN, zones_server, ds_override="other"),
        Zone("plain3.test.", PLAIN3, zones_server, sign_args=("-3", "-", "-H", "0")),
        Zone("iter.test.", PLAIN, zones_server, sign_args=("-3", "ab", "-H", "100")),
        Zone("ed.test.", PLAIN, zones_server, "ED25519"),
        Zone("ed448.test.", PLAIN, zones_server, "ED448"),
        Zone("p384.test.", PLAIN, zones_server, "ECDSAP384SHA384"),
        Zone("rsa512.test.", PLAIN, zones_server, "RSASHA512"),
        Zone("sha1.test.", PLAIN, zones_server, "RSASHA1"),  # unsupported algorithm: insecure
        Zone("wildproof.test.", PLAIN3, zones_server, after_signing=_break_nsec_signatures),
        Zone("ttl.test.", PLAIN, zones_server, after_signing=_raise_www_ttl),
        Zone("soon.test.", PLAIN, zones_server, sign_args=("-s", "now-3600", "-e", "now+100")),
        Zone("stripped.test.", PLAIN, zones_server, serve_unsigned=True),
        Zone("keytrap.test.", KEYTRAP, zones_server, "RSASHA256", after_signing=_break_www_signature),
    ]


def _run(*args: str, cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _key_tag_fill(rdata: dns.rdata.Rdata, tag: int, seed: int) -> str:
    """A DNSKEY with ``rdata``'s flags and algorithm whose key tag is ``tag`` (RFC 4034 Appendix B): the
    key material with four bytes set from ``seed`` and two bytes chosen to make the checksum come out."""
    key = bytearray(rdata.key)  # type: ignore[attr-defined]
    key[-8:-4] = struct.pack(">I", seed)  # the last byte stays: an RSA modulus stays odd
    key[-4:-2] = b"\0\0"
    wire = struct.pack(">HBB", rdata.flags, 3, rdata.algorithm) + bytes(key)  # type: ignore[attr-defined]
    base = sum(byte << 8 if index % 2 == 0 else byte for index, byte in enumerate(wire))
    fill_at = len(wire) - 4
    for value in range(65536):
        total = base + value
        if (total + ((total >> 16) & 0xFFFF)) & 0xFFFF == tag:
            high, low = value >> 8, value & 0xFF
            key[-4:-2] = bytes((high, low)) if fill_at % 2 == 0 else bytes((low, high))
            text = base64.b64encode(bytes(key)).decode()
            return f"{rdata.flags} 3 {rdata.algorithm} {text}"  # type: ignore[attr-defined]
    raise RuntimeError("no key tag fill found")


def _free_block() -> str:
    """A 127.A.B block whose .1 to .3 port 53 and .9 to .11 port 5300 nobody has bound (UDP and TCP), outside
    the unsigned fake hierarchy's network (``fakeauth.NET``), which may be bound later in the same run."""
    rng = random.Random()
    for _ in range(50):
        base = f"127.{rng.randrange(60, 250)}.{rng.randrange(1, 250)}"
        if base.startswith(f"{NET}."):
            continue
        wanted = [(f"{base}.{n}", 53) for n in (1, 2, 3)] + [(f"{base}.{n}", 5300) for n in (9, 10, 11)]
        if all(_free(address) for address in wanted):
            return base
    raise RuntimeError("no free 127.A.B block for the signed hierarchy")


def _free(address: tuple[str, int]) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(address)
            except OSError:
                return False
    return True


class SignedHierarchy:
    def address(self, last: int) -> str:
        return f"{self.base}.{last}"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.anchor = ""  # the root's DS, presentation format
        self.base = _free_block()
        self.root, self.tld, self.zones_server = self.address(1), self.address(2), self.address(3)
        self.zone_files: dict[str, dict[str, Path]] = {self.root: {}, self.tld: {}, self.zones_server: {}}

    # -------------------------------------------------------------------------------------- building

    def build(self) -> SignedHierarchy:
        tld = Zone(
            "test.",
            f"ns2 300 IN A {self.zones_server}\n",
            self.tld,
            nameserver="ns.test.",
            children=children(self.zones_server),
        )
        root = Zone(
            ".",
            f"ns.test. 300 IN A {self.tld}\n",
            self.root,
            nameserver="a.root-servers.test.",
            children=[tld],
        )
        root.records += f"a.root-servers.test. 300 IN A {self.root}\n"
        ds = self._build(root)
        self.anchor = ds.splitlines()[0]
        return self

    def _build(self, zone: Zone) -> str:
        """Write and sign ``zone`` and its children; return the DS lines for its parent ("" unsigned)."""
        name = zone.origin.rstrip(".") or "root"
        work = self.dir / name
        work.mkdir(parents=True, exist_ok=True)
        lines = [
            f"$ORIGIN {zone.origin}",
            f"@ 300 IN SOA {zone.nameserver} hostmaster.test. 1 1800 900 604800 300",
            f"@ 300 IN NS {zone.nameserver}",
            zone.records,
        ]
        if zone.nameserver == "ns.test." and zone.origin == "test.":
            lines.append(f"ns 300 IN A {self.tld}")
        for child in zone.children:
            lines.append(f"{child.origin} 300 IN NS {child.nameserver}")
            ds = self._build(child)
            lines.extend(f"{line}" for line in ds.splitlines() if line)
        unsigned = work / "zone"
        key_name = None
        if zone.algorithm is not None:
            args = ["dnssec-keygen", "-q", "-K", str(work), "-a", zone.algorithm, "-f", "KSK"]
            if zone.algorithm.startswith("RSA"):
                args += ["-b", "1024" if zone.algorithm == "RSASHA1" else "2048"]
            key_name = _run(*args, zone.origin, cwd=work).strip()
            if zone.origin == "keytrap.test.":
                lines.extend(self._keytrap_keys(work / f"{key_name}.key"))
        unsigned.write_text("\n".join(lines) + "\n")
        if zone.algorithm is None:
            self.zone_files[zone.server][zone.origin] = unsigned
            return ""
        signed = work / "zone.signed"
        _run(
            "dnssec-signzone", "-q", "-P", "-S", "-z", "-K", str(work), "-o", zone.origin, "-f", str(signed),
            "-O", "full", *zone.sign_args, str(unsigned), cwd=work,
        )  # fmt: skip
        if zone.after_signing is not None:
            signed.write_text(zone.after_signing(signed.read_text()))  # type: ignore[operator]
        self.zone_files[zone.server][zone.origin] = unsigned if zone.serve_unsigned else signed
        if zone.ds_override is not None:
            (work / "other").mkdir(exist_ok=True)
            other = _run(
                "dnssec-keygen", "-q", "-K", str(work / "other"), "-a", zone.algorithm, zone.origin, cwd=work
            )
            return _run("dnssec-dsfromkey", "-2", str(work / "other" / f"{other.strip()}.key"), cwd=work)
        return _run("dnssec-dsfromkey", "-2", str(work / f"{key_name}.key"), cwd=work)

    @staticmethod
    def _keytrap_keys(key_file: Path) -> list[str]:
        text = key_file.read_text().split("IN DNSKEY", 1)[1].strip()
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, text)
        tag = dns.dnssec.key_id(rdata)  # type: ignore[arg-type]
        fakes = [f"@ 300 IN DNSKEY {_key_tag_fill(rdata, tag, seed)}" for seed in range(KEYTRAP_FAKE_KEYS)]
        return [f"@ 300 IN DNSKEY {text}", *fakes]  # the real key too: signzone would take a fake for it

    # ------------------------------------------------------------------------------------- serving

    def start(self) -> SignedHierarchy:
        try:
            for server, zones in self.zone_files.items():
                self._start_nsd(server, zones)
            for server, zones in self.zone_files.items():
                self._wait_ready(server, next(iter(zones)))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nsd(self, server: str, zones: dict[str, Path]) -> None:
        work = self.dir / f"nsd-{server}"
        (work / "db").mkdir(parents=True, exist_ok=True)
        zone_lines = "".join(
            f'zone:\n    name: "{origin}"\n    zonefile: "{path}"\n' for origin, path in zones.items()
        )
        conf = work / "nsd.conf"
        conf.write_text(
            "server:\n"
            f"    ip-address: {server}@53\n"
            '    username: ""\n'
            '    chroot: ""\n'
            f'    zonesdir: "{work}"\n'
            f'    pidfile: "{work}/nsd.pid"\n'
            '    database: ""\n'
            f'    zonelistfile: "{work}/zone.list"\n'
            f'    xfrdfile: "{work}/xfrd.state"\n'
            f'    xfrdir: "{work}"\n'
            f'    logfile: "{work}/nsd.log"\n'
            "    server-count: 1\n"
            "    verbosity: 1\n"
            "    ip-transparent: no\n"
            "    reuseport: no\n"
            "remote-control:\n"
            "    control-enable: yes\n"
            f"    control-interface: {work}/nsd.ctl\n" + zone_lines
        )
        self.processes.append(
            subprocess.Popen(
                ["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )

    def queries(self) -> int:
        """Queries the three servers have answered so far (``nsd-control stats_noreset``)."""
        total = 0
        for server in self.zone_files:
            conf = self.dir / f"nsd-{server}" / "nsd.conf"
            out = _run("nsd-control", "-c", str(conf), "stats_noreset", cwd=self.dir)
            total += sum(
                int(line.split("=")[1]) for line in out.splitlines() if line.startswith("num.queries=")
            )
        return total

    def _wait_ready(self, server: str, origin: str) -> None:
        deadline = time.monotonic() + 20
        query = dns.message.make_query(origin, "SOA")
        while True:
            try:
                reply = dns.query.udp(query, server, timeout=0.5)
                if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    return
            except (OSError, dns.exception.Timeout):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"NSD on {server} did not start serving {origin}")
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()


class Unbound:
    """Unbound resolving from the signed hierarchy's root on loopback: validating with the root's DS as its
    trust anchor (``validate=True``), or a plain iterator (a non-validating upstream for forward mode)."""

    def __init__(
        self, directory: Path, hierarchy: SignedHierarchy, address: str, port: int, *, validate: bool
    ):
        self.dir = directory
        self.address, self.port = address, port
        self.hierarchy = hierarchy
        self.validate = validate
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Unbound:
        self.dir.mkdir(parents=True, exist_ok=True)
        hints = self.dir / "root.hints"
        hints.write_text(
            f". 3600 IN NS a.root-servers.test.\na.root-servers.test. 3600 IN A {self.hierarchy.root}\n"
        )
        modules = "validator iterator" if self.validate else "iterator"
        conf = self.dir / "unbound.conf"
        conf.write_text(
            "server:\n"
            f"    interface: {self.address}@{self.port}\n"
            "    do-daemonize: no\n"
            '    username: ""\n'
            '    chroot: ""\n'
            f'    directory: "{self.dir}"\n'
            f'    pidfile: "{self.dir}/unbound.pid"\n'
            "    use-syslog: no\n"
            f'    logfile: "{self.dir}/unbound.log"\n'
            "    verbosity: 1\n"
            "    val-log-level: 2\n"
            "    do-ip6: no\n"
            "    do-not-query-localhost: no\n"
            f'    root-hints: "{hints}"\n'
            f'    module-config: "{modules}"\n'
            f'    trust-anchor: "{self.hierarchy.anchor}"\n'
            "    access-control: 127.0.0.0/8 allow\n"
            '    local-zone: "test." nodefault\n'  # RFC 6761 reserves test.; here it is our TLD
            "    num-threads: 1\n"
            "    so-reuseport: no\n"
            "    prefetch: no\n"
            "remote-control:\n    control-enable: no\n"
        )
        _run("unbound-checkconf", str(conf), cwd=self.dir)
        self.process = subprocess.Popen(
            ["unbound", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        query = dns.message.make_query(".", "NS")  # primes the root NS set, as a cold start would
        while True:
            try:
                dns.query.udp(query, self.address, port=self.port, timeout=0.5)
                return self
            except (OSError, dns.exception.Timeout):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"unbound did not start (see {self.dir}/unbound.log)") from None
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self.process = None
