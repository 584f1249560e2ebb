"""Properties of the hand-written wire code: it agrees with dnslib on every well-formed query, never raises
on arbitrary bytes, and what it renders parses back to the same records."""

from __future__ import annotations

import dns.message
from dnslib import EDNS0, QTYPE, RR, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from blockdns import dnsname, names, wire

LABEL = st.from_regex(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,20}[A-Za-z0-9_])?", fullmatch=True)
NAME = st.lists(LABEL, min_size=1, max_size=6).map(".".join)
QTYPES = st.sampled_from(["A", "AAAA", "MX", "TXT", "NS", "SOA", "CNAME", "HTTPS", "SRV", "PTR", "ANY"])


@settings(max_examples=300, deadline=None)
@given(
    name=NAME,
    qtype=QTYPES,
    qid=st.integers(0, 65535),
    edns=st.booleans(),
    payload=st.integers(0, 65535),
    do=st.booleans(),
    rd=st.booleans(),
    cd=st.booleans(),
)
def test_fast_parser_agrees_with_dnslib(name, qtype, qid, edns, payload, do, rd, cd):
    query = DNSRecord.question(name, qtype)
    query.header.id = qid
    query.header.rd = int(rd)
    query.header.cd = int(cd)
    if edns:
        query.add_ar(EDNS0(udp_len=payload, flags="do" if do else ""))
    data = bytes(query.pack())
    parsed = wire.parse_query_fast(data)
    assert parsed is not None
    reference = DNSRecord.parse(data)
    fqid, flags, qname, fqtype, qclass, end, fpayload, fdo = parsed
    assert fqid == reference.header.id
    assert bool(flags & wire.RD) == bool(reference.header.rd) and bool(flags & wire.CD) == bool(
        reference.header.cd
    )
    assert dnsname.text_key(bytes(qname)) == str(reference.q.qname).rstrip(".").lower()
    assert fqtype == reference.q.qtype and qclass == reference.q.qclass
    assert data[12:end] == bytes(DNSRecord.question(name, qtype).pack())[12:]
    if edns:
        assert fpayload == max(payload, 512) and bool(fdo) == do
    else:
        assert fpayload == 0 and not fdo


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_fast_parser_never_raises(data):
    result = wire.parse_query_fast(data)
    if result is not None:
        DNSRecord.parse(data)  # whatever the fast path accepts, dnslib can parse too


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_error_response_never_raises_and_never_answers_a_response(data, has_opt):
    out = wire.error_response(data, wire.FORMERR, has_opt=has_opt)
    if out is not None:
        assert len(out) >= 12 and out[:2] == data[:2]
        assert not data[2] & 0x80


@settings(max_examples=200, deadline=None)
@given(
    name=NAME,
    addresses=st.lists(st.ip_addresses(v=4).map(str), min_size=1, max_size=8, unique=True),
    ttl=st.integers(0, 100000),
    age=st.integers(0, 200000),
    client_case=st.booleans(),
)
def test_parse_reply_then_render_round_trips(name, addresses, ttl, age, client_case):
    query = DNSRecord.question(name, "A")
    response = query.reply()
    for address in addresses:
        response.add_answer(*RR.fromZone(f"{name}. {ttl} IN A {address}"))
    response.add_ar(EDNS0(udp_len=1232))
    data = bytes(response.pack())
    qname = dnsname.from_text(name)
    parsed = wire.parse_reply(data, qname)
    assert parsed.addresses == tuple(addresses)
    assert parsed.reply.counts == (len(addresses), 0, 0)  # the upstream's OPT was cut out
    client_name = name.swapcase() if client_case else name
    client_query = DNSRecord.question(client_name, "A")
    question = bytes(client_query.pack())[12:]
    assert parsed.ttl == ttl and not parsed.negative  # TTLs as the server gave them...
    out = wire.render(7, wire.RD, question, parsed.reply.clamped(0, 86400), age, 0, 0, 65535)
    message = dns.message.from_wire(out)
    assert message.id == 7 and message.edns == -1
    assert [rr.address for rr in message.answer[0]] == addresses
    assert message.answer[0].ttl == max(min(ttl, 86400) - age, 0)  # ...clamped to max_ttl, then aged
    assert message.question[0].name.to_text().rstrip(".") == client_name


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_normalise_is_idempotent_and_raises_only_invalid_name(text):
    try:
        once = names.normalise(text)
    except names.InvalidName:
        return
    assert names.normalise(once) == once
    assert dnsname.text_key(dnsname.from_text(once)) == once


def test_ede_option_layout():
    option = wire.ede_option(15, "blocked")
    assert option[:4] == b"\x00\x0f\x00\x09" and option[4:6] == b"\x00\x0f" and option[6:] == b"blocked"


def test_render_truncates_to_the_limit_and_keeps_opt():
    query = DNSRecord.question("big.example", "TXT")
    response = query.reply()
    for i in range(20):
        response.add_answer(*RR.fromZone(f'big.example. 60 IN TXT "{"z" * 100}{i}"'))
    parsed = wire.parse_reply(bytes(response.pack()), dnsname.from_text("big.example"))
    question = bytes(query.pack())[12:]
    out = wire.render(1, 0, question, parsed.reply, 0, 1232, 0, 512)
    message = dns.message.from_wire(out)
    assert message.flags & 0x0200 and not message.answer and message.edns == 0
    assert message.question[0].rdtype == QTYPE.TXT


@given(
    labels=st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63), min_size=1, max_size=4
    ),
    qtype=st.integers(1, 65535),
    do=st.booleans(),
)
def test_padded_queries_are_whole_blocks_and_keep_their_question(labels, qtype, do):
    qname = b"".join(len(label).to_bytes(1, "big") + label.encode() for label in labels) + b"\x00"
    query = wire.build_query(0x1234, qname, qtype, do=do)
    padded = wire.pad_query(query)
    assert len(padded) % wire.QUERY_PADDING_BLOCK == 0 and len(padded) >= len(query)
    message = dns.message.from_wire(padded)
    assert [option.otype for option in message.options] == [wire.PADDING_OPTION]
    assert bool(message.ednsflags & 0x8000) == do and message.id == 0x1234
    assert padded[: len(query) - 2] == query[:-2]  # only the OPT record's length and its option added
    plain = wire.build_query(0x1234, qname, qtype, edns=False)
    assert wire.pad_query(plain) == plain
