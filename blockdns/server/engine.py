"""The query engine: everything between the bytes a transport received and the bytes it sends back.

Two paths, one meaning:

* :meth:`Engine.answer_fast` handles the common cases synchronously without dnslib: a name whose decision
  is already memoised as blocked, or a cache hit. It returns None whenever anything is not already known,
  and never changes what an answer would be: it only reads memos the slow path filled with the very same
  functions (:func:`blocking.decide`, :func:`blocking.inspect`).
* :meth:`Engine.answer` runs the handler chain (assembled in :func:`build_chain`) for everything else.

Response codes are decided here at the edge: an exception in a handler becomes SERVFAIL for that one query,
an unparseable query FORMERR or silence, an oversize UDP answer is truncated with TC=1.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from blockdns import dnsname
from blockdns.config import Settings
from blockdns.errors import WireError
from blockdns.ops.querylog import QueryLog
from blockdns.ops.stats import ServerStats
from blockdns.policy import Decision, GroupPolicy, Policy, Rule
from blockdns.resolve.access import AccessControl, AccessHandler
from blockdns.resolve.base import Answer, Handler, Next, Outcome, Query, chain
from blockdns.resolve.blocking import BlockingHandler, BlockResponder, InspectionHandler, PauseSwitch, inspect
from blockdns.resolve.cache import AnswerCache, CacheHandler
from blockdns.resolve.local import LocalHandler
from blockdns.resolve.resolving import ResolveHandler, servfail
from blockdns.server.ratelog import RateLimitedLog
from blockdns.wire import (
    BADVERS,
    CD,
    EDE_OTHER,
    FORMERR,
    MAX_UDP_PAYLOAD,
    NOTIMP,
    OPCODE_MASK,
    QR,
    RD,
    TYPE_OPT,
    Reply,
    build_query,
    error_response,
    parse_message,
    parse_query_fast,
    render,
    response_limit,
    wire_name_to_text,
)

log = logging.getLogger(__name__)

_MISSING = object()
PARSE_MEMO_LIMIT = 65536
MEMO_LIMIT = 100_000  # entries in each per-generation memo; a full memo is cleared, never grown
TCP_LIMIT = 65535


@dataclass(slots=True)
class Generation:
    """Everything that changes together on a reload: settings, compiled policy, and the memos derived
    from them. The engine swaps one reference, so a query sees one generation from start to end."""

    number: int
    settings: Settings
    policy: Policy
    access: AccessControl
    responder: BlockResponder
    local: LocalHandler
    chain: Next
    # client address -> its group, filled only for allowed clients (refused ones always take the slow path)
    clients: dict[str, GroupPolicy] = field(default_factory=dict)
    # (group name, qname wire, qtype) -> the blocked reply, filled by the slow path
    blocked: dict[tuple[str, bytes, int], Reply] = field(default_factory=dict)


def block_key(rule: Rule | None) -> tuple[str, str, str]:
    """How blocks are counted: (vendor id or "", category or "", selector)."""
    if rule is None:
        return ("", "", "")
    return (rule.vendor.id if rule.vendor else "", rule.category or "", rule.selector)


# The one place that fixes the order of the chain (asserted by a test): access -> local answers ->
# blocking (the name) -> inspection (CNAMEs, addresses, on the way back) -> cache -> resolve.
CHAIN_ORDER = ("access", "local", "blocking", "inspection", "cache", "resolve")


def build_chain(parts: dict[str, Handler], resolve: Next) -> Next:
    """Assemble the handlers named in CHAIN_ORDER around ``resolve``, the last link."""
    return chain([parts[name] for name in CHAIN_ORDER[:-1]], resolve)


class Engine:
    def __init__(
        self,
        cache: AnswerCache,
        resolver: ResolveHandler,
        stats: ServerStats,
        pause: PauseSwitch,
        settings: Settings,
        policy: Policy,
    ) -> None:
        self.cache = cache
        self.resolver = resolver
        self.stats = stats
        self.pause = pause
        self.querylog: QueryLog | None = None  # set when the query log is on
        self._numbers = 0
        self._cache_handler = CacheHandler(cache, stats)
        self._bad_packet_log = RateLimitedLog(log, interval=10.0)
        self._parsed: dict[bytes, tuple] = {}  # query bytes after the ID -> what answer_fast needs
        self.generation = self.make_generation(settings, policy)

    # ------------------------------------------------------------------------------------- generations

    def make_generation(self, settings: Settings, policy: Policy) -> Generation:
        self._numbers += 1
        access = AccessControl(settings.server.allowed_networks())
        responder = BlockResponder(settings.blocking)
        local = LocalHandler(settings.blocking.bypass_protection)
        parts: dict[str, Handler] = {
            "access": AccessHandler(access),
            "local": local,
            "blocking": BlockingHandler(responder, self.pause),
            "inspection": InspectionHandler(responder, self.pause),
            "cache": self._cache_handler,
        }
        return Generation(
            number=self._numbers,
            settings=settings,
            policy=policy,
            access=access,
            responder=responder,
            local=local,
            chain=build_chain(parts, self.resolver),
        )

    def install(self, generation: Generation) -> None:
        """Swap in a new generation (one reference assignment: atomic for every query after it)."""
        self.generation = generation

    # ----------------------------------------------------------------------------------------- fast path

    def answer_fast(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        """Answer from memos and the cache without dnslib, or None to take the slow path."""
        # Clients repeat themselves: everything after the ID parses the same every time, so the parse is
        # memoised by those bytes (a dict probe instead of a walk over the labels).
        known = self._parsed.get(data[2:])
        if known is None:
            known = self._remember_parse(data)
            if known is None:
                return None
        gen = self.generation
        group = gen.clients.get(client)
        if group is None:
            return None
        flags, qname, qtype, question, payload, do, key, udp_limit = known
        qid = (data[0] << 8) | data[1]
        decision = group.memo.get(qname)
        if decision is None:
            return None
        now = time.monotonic()
        paused = self.pause.until > now
        limit = TCP_LIMIT if tcp else udp_limit
        stats = self.stats
        if decision.action == "block" and not paused:
            reply = gen.blocked.get((group.name, qname, qtype))
            if reply is None:
                return None
            out = render(qid, flags, question, reply, 0, payload, do, limit)
            stats.queries[(qtype, "blocked", group.name)] += 1
            stats.blocks[block_key(decision.rule)] += 1
            if self.querylog is not None:
                self._log(client, group.name, qname, qtype, "blocked", reply.rcode, decision, None, tcp)
            return out
        entry = self.cache.get(key, now)
        if entry is None:
            return None
        if (entry.cnames or entry.addresses) and not paused:
            if entry.verdict_generation != gen.number:
                entry.verdicts = {}
                entry.verdict_generation = gen.number
            verdict = entry.verdicts.get(group.name, _MISSING)
            if verdict is _MISSING:
                verdict = inspect(group, decision.name, entry.cnames, entry.addresses)
                entry.verdicts[group.name] = verdict
            if verdict is not None:
                return None  # blocked through its CNAME chain or an address: the slow path says so
        reply = entry.reply
        out = render(qid, flags, question, reply, int(now - entry.stored), payload, do, limit)
        stats.queries[(qtype, "cached", group.name)] += 1
        stats.cache_hits += 1
        if self.querylog is not None:
            self._log(client, group.name, qname, qtype, "cached", reply.rcode, None, entry.upstream, tcp)
        return out

    def _remember_parse(self, data: bytes) -> tuple | None:
        """Parse a query and memoise what the fast path needs, keyed by everything after the ID."""
        parsed = parse_query_fast(data)
        if parsed is None:
            return None
        _, flags, qname, qtype, qclass, question_end, payload, do = parsed
        qname = bytes(qname)
        cache_key = (qname, qtype, qclass, do, bool(flags & CD))
        known = (
            flags,
            qname,
            qtype,
            data[12:question_end],
            payload,
            do,
            cache_key,
            response_limit(payload, False),
        )
        if len(self._parsed) >= PARSE_MEMO_LIMIT:
            self._parsed.clear()
        self._parsed[data[2:]] = known
        return known

    def _log(
        self,
        client: str,
        group: str,
        qname: bytes,
        qtype: int,
        outcome: str,
        rcode: int,
        decision: Decision | None,
        upstream: str | None,
        tcp: bool,
        duration_ms: float = 0.0,
        reason: str | None = None,
    ) -> None:
        querylog = self.querylog
        if querylog is None:
            return
        queue = querylog.queue
        if len(queue) < querylog.capacity:
            queue.append(
                (
                    time.time(),
                    client,
                    group,
                    qname,
                    qtype,
                    outcome,
                    rcode,
                    reason if reason is not None else (decision.reason if decision else None),
                    decision,
                    upstream,
                    duration_ms,
                    "tcp" if tcp else "udp",
                )
            )
        else:
            self.stats.log_dropped += 1

    # ----------------------------------------------------------------------------------------- slow path

    async def answer(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        """Answer any packet through the handler chain; None means say nothing."""
        started = time.monotonic()
        parsed = parse_query_fast(data)
        if parsed is None:
            data, parsed = self._reparse(data)
            if parsed is None:
                return data or None  # an error response, or silence
        gen = self.generation
        qid, flags, qname, qtype, qclass, question_end, payload, do = parsed
        group = gen.policy.group_for(client)
        allowed = gen.access.allowed(client)
        if allowed:
            if len(gen.clients) >= MEMO_LIMIT:
                gen.clients.clear()
            gen.clients.setdefault(client, group)
        text = wire_name_to_text(qname) or ""
        query = Query(
            id=qid,
            flags=flags,
            qname=text,
            qname_wire=bytes(qname),
            question=data[12:question_end],
            qtype=qtype,
            qclass=qclass,
            payload=payload,
            do=do,
            client=client,
            transport="tcp" if tcp else "udp",
            group=group,
            received=started,
        )
        try:
            answer = await gen.chain(query)
        except Exception:
            self.stats.handler_failures += 1
            log.exception("handler failed for %s %d from %s", text, qtype, client)
            answer = Answer(Outcome.ERROR, servfail(EDE_OTHER, "internal error"), reason="internal error")
        limit = response_limit(payload, tcp)
        out = render(qid, flags, query.question, answer.reply, answer.age, payload, do, limit)
        self._account(query, answer, started, gen)
        return out

    def _account(self, query: Query, answer: Answer, started: float, gen: Generation) -> None:
        outcome = answer.outcome.value
        group = query.group.name
        self.stats.queries[(query.qtype, outcome, group)] += 1
        if answer.outcome is Outcome.REFUSED:
            self.stats.refused_clients += 1
        decision = answer.decision
        if answer.outcome is Outcome.BLOCKED and decision is not None and decision.rule is not None:
            self.stats.blocks[block_key(decision.rule)] += 1
            if decision.via is None:
                if len(gen.blocked) >= MEMO_LIMIT:
                    gen.blocked.clear()  # random names under a blocked domain must not grow it without end
                gen.blocked[(group, query.qname_wire, query.qtype)] = answer.reply
        duration_ms = (time.monotonic() - started) * 1000
        self._log(
            query.client,
            group,
            query.qname_wire,
            query.qtype,
            outcome,
            answer.reply.rcode,
            decision,
            answer.upstream,
            query.transport == "tcp",
            duration_ms,
            answer.reason,
        )

    def _reparse(self, data: bytes) -> tuple[bytes, tuple | None]:
        """A packet the fast parser refused: decide between silence, an error code, or a clean re-encoding
        (a legal query the fast parser does not take, e.g. a compressed question name)."""
        if len(data) < 12:
            self._bad("short packet")
            return b"", None
        flags = int.from_bytes(data[2:4], "big")
        if flags & QR:
            self._bad("response sent as a query")
            return b"", None
        try:
            message = parse_message(data)
        except WireError:
            message = None
        has_opt = message is not None and any(rr.rtype == TYPE_OPT for rr in message.ar)

        def refuse(rcode: int) -> tuple[bytes, None]:
            return error_response(data, rcode, has_opt=has_opt) or b"", None

        if flags & OPCODE_MASK:
            return refuse(NOTIMP)
        if message is None:
            self._bad("unparseable query")
            return refuse(FORMERR)
        if len(message.questions) != 1 or message.rr or message.auth:
            self._bad("not exactly one question")
            return refuse(FORMERR)
        opts = [rr for rr in message.ar if rr.rtype == TYPE_OPT]
        if len(opts) > 1:
            return refuse(FORMERR)
        if opts and (opts[0].ttl >> 16) & 0xFF:
            return refuse(BADVERS)
        question = message.questions[0]
        try:
            qname = dnsname.from_text(str(question.qname))
        except (UnicodeError, ValueError):
            return refuse(FORMERR)
        opt = opts[0] if opts else None
        clean = build_query(
            message.header.id,
            qname,
            question.qtype,
            question.qclass,
            rd=bool(flags & RD),
            cd=bool(flags & CD),
            do=bool(opt and opt.ttl & 0x8000),
            edns=opt is not None,
            payload=opt.rclass if opt else MAX_UDP_PAYLOAD,
        )
        parsed = parse_query_fast(clean)
        if parsed is None:
            return refuse(FORMERR)
        return clean, parsed

    def _bad(self, what: str) -> None:
        self.stats.bad_packets += 1
        self._bad_packet_log.warning("bad packet: %s", what)
