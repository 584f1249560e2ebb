"""``lists update`` against a real HTTP server on loopback: nothing lost, nothing poisoned, runs atomic."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockdns.catalog import load_catalog
from blockdns.errors import FeedError
from blockdns.feeds import store as store_module
from blockdns.feeds.fetch import FetchOptions
from blockdns.feeds.manifest import read_manifest
from blockdns.feeds.model import FeedDefinition, read_data
from blockdns.feeds.report import failed_feeds_summary, render_report
from blockdns.feeds.store import DataStore, StoredFeeds, read_feed_sources
from blockdns.feeds.update import UpdateReport, update_feeds

from httpfeeds import FeedServer

QUICK = FetchOptions(connect_timeout=1.0, read_timeout=0.3, total_timeout=5.0, attempts=2, backoff=0.01)
V2FLY = Path(__file__).resolve().parent / "data" / "feeds" / "v2fly"
LIST = "".join(f"host{i}.example\n" for i in range(20))


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def run(definitions: list[FeedDefinition], data_dir: Path, **options: object) -> UpdateReport:
    options.setdefault("fetch_options", QUICK)
    return asyncio.run(update_feeds(definitions, data_dir, **options))  # type: ignore[arg-type]


def domains_feed(server: FeedServer, name: str = "plain", path: str = "/plain.txt") -> FeedDefinition:
    return FeedDefinition(name=name, url=server.url(path), format="domains", match="suffix")


def snapshot(data_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(data_dir.iterdir()) if p.is_file() and p.name != ".update.lock"
    }


def assert_consistent(data_dir: Path) -> None:
    """Every manifest entry names a data file that exists and has the recorded sha256."""
    for name, state in read_manifest(data_dir).feeds.items():
        if state.file is None:
            continue
        text = (data_dir / state.file).read_bytes()
        assert hashlib.sha256(text).hexdigest() == state.sha256, name
        assert len(read_data(data_dir / state.file)) == state.entries, name


# ------------------------------------------------------------------------------------------- good runs


def test_first_run_writes_data_and_manifest(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST, etag='"v1"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    report = run([domains_feed(server)], tmp_path)
    assert report.exit_code == 0
    outcome = report.outcomes[0]
    assert (outcome.status, outcome.added, outcome.removed, outcome.total) == ("ok", 20, 0, 20)
    state = read_manifest(tmp_path).feeds["plain"]
    assert state.model_dump().keys() >= {
        "url", "etag", "last_modified", "sha256", "fetched_at", "entries", "rejected", "status",
    }  # fmt: skip
    assert (state.etag, state.entries, state.status) == ('"v1"', 20, "ok")
    assert "+host3.example" in StoredFeeds.read(tmp_path).entries("plain").lines()
    assert_consistent(tmp_path)
    assert "plain  ok         +20 -0 =20 (rejected 0)" in render_report(report)


def test_policy_reads_what_the_update_wrote(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST)
    definition = domains_feed(server)
    run([definition], tmp_path)
    [source] = read_feed_sources([definition], tmp_path)
    assert "host7.example" in source.entries.block_suffix


def test_policy_reads_the_manifest_once_and_plain_data_without_an_entry(
    server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.serve("/plain.txt", LIST)
    updated = domains_feed(server)
    run([updated], tmp_path)
    (tmp_path / "by-hand.list").write_text("+hand.example\n")
    (tmp_path / "off.list").write_text("+off.example\n")
    by_hand = FeedDefinition(name="by-hand", url="file:///by-hand", format="domains")
    off = FeedDefinition(name="off", url="file:///off", format="domains", enabled=False)
    never = FeedDefinition(name="never", url="file:///never", format="domains")
    reads: list[Path] = []

    def counting_read(data_dir: Path) -> object:
        reads.append(data_dir)
        return read_manifest(data_dir)

    monkeypatch.setattr(store_module, "read_manifest", counting_read)
    assert read_feed_sources([], tmp_path) == []  # no feeds defined: data_dir is not consulted
    sources = read_feed_sources([updated, by_hand, off, never], tmp_path)
    assert reads == [tmp_path]
    assert [(s.name, len(s.entries)) for s in sources] == [("plain", 20), ("by-hand", 1)]


def test_second_run_is_conditional_and_unchanged(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST, etag='"v1"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    run([domains_feed(server)], tmp_path)
    before = snapshot(tmp_path)
    report = run([domains_feed(server)], tmp_path)
    assert report.outcomes[0].status == "unchanged"
    assert report.exit_code == 0
    headers = server.last("/plain.txt").headers
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    assert read_manifest(tmp_path).feeds["plain"].status == "unchanged"


def test_same_body_without_validators_is_unchanged(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST)
    run([domains_feed(server)], tmp_path)
    assert run([domains_feed(server)], tmp_path).outcomes[0].status == "unchanged"


def test_a_changed_body_reports_the_diff(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST, etag='"v1"')
    run([domains_feed(server)], tmp_path)
    old_file = read_manifest(tmp_path).feeds["plain"].file
    server.serve("/plain.txt", LIST.replace("host0.example", "new.example"), etag='"v2"')
    outcome = run([domains_feed(server)], tmp_path).outcomes[0]
    assert (outcome.status, outcome.added, outcome.removed, outcome.total) == ("ok", 1, 1, 20)
    assert read_manifest(tmp_path).feeds["plain"].file != old_file
    assert (tmp_path / str(old_file)).exists()  # kept until the next run, for a reader of the old manifest
    run([domains_feed(server)], tmp_path)
    assert not (tmp_path / str(old_file)).exists()
    assert_consistent(tmp_path)


def test_changing_the_definition_fetches_in_full(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST, etag='"v1"')
    run([domains_feed(server)], tmp_path)
    exact = FeedDefinition(name="plain", url=server.url("/plain.txt"), format="domains")
    outcome = run([exact], tmp_path).outcomes[0]
    assert "if-none-match" not in server.last("/plain.txt").headers
    assert (outcome.status, outcome.added, outcome.removed) == ("ok", 20, 20)


def test_disabled_feeds_are_not_fetched(server: FeedServer, tmp_path: Path) -> None:
    definition = domains_feed(server).model_copy(update={"enabled": False})
    assert run([definition], tmp_path).outcomes == []
    assert server.count() == 0


def test_dry_run_writes_nothing(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST)
    data_dir = tmp_path / "lists"
    report = run([domains_feed(server)], data_dir, dry_run=True)
    assert report.outcomes[0].status == "ok"
    assert report.outcomes[0].added == 20
    assert not data_dir.exists()
    assert "dry run: nothing written" in render_report(report)


def test_review_queue_lists_names_no_vendor_covers(server: FeedServer, tmp_path: Path) -> None:
    vendors = tmp_path / "catalog" / "vendors"
    vendors.mkdir(parents=True)
    (vendors / "acme.toml").write_text(
        'name = "Acme"\njurisdiction = "US"\ncategories = ["chat"]\nhomepage = "https://acme.example"\n'
        'reviewed = 2026-01-01\n[[domains]]\nname = "acme.example"\nevidence = "https://acme.example/docs"\n'
    )
    server.serve("/plain.txt", "chat.acme.example\nunknown-ai.example\n")
    report = run([domains_feed(server)], tmp_path / "data", catalog=load_catalog(vendors))
    assert report.review == {"plain": ["unknown-ai.example"]}
    assert "review queue: 1 new name that no catalogue vendor covers" in render_report(report)


# ---------------------------------------------------------------------------------- nothing lost


FAILURES = {
    "http 500": (lambda s: s.fail("/plain.txt", 500), "failed", "HTTP 500"),
    "http 404": (lambda s: s.fail("/plain.txt", 404), "failed", "HTTP 404"),
    "timeout": (lambda s: s.slow("/plain.txt", LIST, delay=1.0), "failed", "timed out"),
    "truncated": (lambda s: s.truncated("/plain.txt", LIST * 5, sent=40), "failed", "transfer broken off"),
    "html 200": (lambda s: s.html_page("/plain.txt"), "refused", "HTML page"),
    "empty 200": (lambda s: s.empty("/plain.txt"), "refused", "empty body"),
    "oversize": (lambda s: s.oversize("/plain.txt", 100_000), "refused", "larger than the limit"),
    "not the format": (
        lambda s: s.serve("/plain.txt", "<<garbage>> !!\n" * 50),
        "refused",
        "not domains format",
    ),
    "no entries": (lambda s: s.serve("/plain.txt", "# only comments\n"), "refused", "no usable entries"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_failure_keeps_the_last_good_data(server: FeedServer, tmp_path: Path, case: str) -> None:
    server.serve("/plain.txt", LIST, etag='"v1"')
    run([domains_feed(server)], tmp_path)
    good = StoredFeeds.read(tmp_path).entries("plain")
    before = snapshot(tmp_path)
    make_failure, status, message = FAILURES[case]
    make_failure(server)
    options = FetchOptions(read_timeout=0.2, attempts=2, backoff=0.01, total_timeout=5, max_bytes=50_000)
    for force in (False, True):  # --force never accepts these
        report = run([domains_feed(server)], tmp_path, fetch_options=options, force=force)
        outcome = report.outcomes[0]
        assert report.exit_code == 1
        assert outcome.status == status
        assert message in (outcome.error or "")
        assert StoredFeeds.read(tmp_path).entries("plain") == good
        state = read_manifest(tmp_path).feeds["plain"]
        assert (state.status, state.entries, state.etag) == (status, 20, '"v1"')
        assert message in (state.error or "")
        assert {k: v for k, v in snapshot(tmp_path).items() if k != "manifest.json"} == {
            k: v for k, v in before.items() if k != "manifest.json"
        }
        assert_consistent(tmp_path)
        assert "kept last good data: 20 entries" in render_report(report)
        assert "plain keeps the last good data" in render_report(report)
        assert failed_feeds_summary(read_manifest(tmp_path)) == (
            "1 feed failed or was refused: plain keeps the last good data"
        )


def test_a_failed_feed_does_not_stop_the_others(server: FeedServer, tmp_path: Path) -> None:
    server.fail("/bad.txt", 503)
    server.serve("/good.txt", LIST)
    report = run(
        [domains_feed(server, "bad", "/bad.txt"), domains_feed(server, "good", "/good.txt")], tmp_path
    )
    assert [o.status for o in report.outcomes] == ["failed", "ok"]
    assert report.exit_code == 1
    assert "1 of 2 feeds failed or were refused: bad has no data yet" in render_report(report)
    assert (
        failed_feeds_summary(read_manifest(tmp_path)) == "1 feed failed or was refused: bad has no data yet"
    )


def test_a_shrink_by_more_than_half_needs_force(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST)
    run([domains_feed(server)], tmp_path)
    server.serve("/plain.txt", "".join(f"host{i}.example\n" for i in range(9)))
    report = run([domains_feed(server)], tmp_path)
    assert report.outcomes[0].status == "refused"
    assert "would shrink from 20 to 9 entries" in (report.outcomes[0].error or "")
    assert len(StoredFeeds.read(tmp_path).entries("plain")) == 20
    forced = run([domains_feed(server)], tmp_path, force=True)
    assert (forced.exit_code, forced.outcomes[0].status, forced.outcomes[0].removed) == (0, "ok", 11)
    assert len(StoredFeeds.read(tmp_path).entries("plain")) == 9


def test_exactly_half_is_accepted(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST)
    run([domains_feed(server)], tmp_path)
    server.serve("/plain.txt", "".join(f"host{i}.example\n" for i in range(10)))
    assert run([domains_feed(server)], tmp_path).outcomes[0].status == "ok"


def test_rejected_lines_within_the_budget_are_reported(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST + "bad name here\n")
    report = run([domains_feed(server)], tmp_path)
    outcome = report.outcomes[0]
    assert (outcome.status, outcome.rejected) == ("ok", 1)
    assert "plain:21: more than one name on the line: 'bad name here'" in render_report(report)


# ------------------------------------------------------------------------------------------ v2fly includes


def serve_v2fly(server: FeedServer) -> None:
    for path in V2FLY.iterdir():
        if path.name != "LICENSE":
            server.serve(f"/data/{path.name}", path.read_bytes(), etag=f'"{path.name}-1"')


def v2fly_feed(server: FeedServer) -> FeedDefinition:
    return FeedDefinition(name="ai", url=server.url("/data/category-ai-!cn"), format="v2fly", category="chat")


def test_v2fly_includes_are_followed_and_conditional(server: FeedServer, tmp_path: Path) -> None:
    serve_v2fly(server)
    first = run([v2fly_feed(server)], tmp_path)
    assert first.outcomes[0].status == "ok"
    lines = StoredFeeds.read(tmp_path).entries("ai").lines()
    assert "+anthropic.com" in lines
    assert "=openaiapi-site.azureedge.net" in lines
    assert server.count("/data/anthropic") == 1
    second = run([v2fly_feed(server)], tmp_path)
    assert second.outcomes[0].status == "unchanged"
    assert server.last("/data/anthropic").headers["if-none-match"] == '"anthropic-1"'
    assert server.last("/data/category-ai-!cn").headers["if-none-match"] == '"category-ai-!cn-1"'


def test_v2fly_changed_include_behind_an_unchanged_root(server: FeedServer, tmp_path: Path) -> None:
    serve_v2fly(server)
    run([v2fly_feed(server)], tmp_path)
    body = (V2FLY / "anthropic").read_text() + "claude-new.example\n"
    server.serve("/data/anthropic", body, etag='"anthropic-2"')
    outcome = run([v2fly_feed(server)], tmp_path).outcomes[0]
    assert (outcome.status, outcome.added, outcome.removed) == ("ok", 1, 0)
    assert "+claude-new.example" in StoredFeeds.read(tmp_path).entries("ai").lines()
    assert server.last("/data/category-ai-!cn").headers["if-none-match"] == '"category-ai-!cn-1"'  # got 304


def test_v2fly_missing_include_fails_the_feed(server: FeedServer, tmp_path: Path) -> None:
    serve_v2fly(server)
    run([v2fly_feed(server)], tmp_path)
    good = StoredFeeds.read(tmp_path).entries("ai")
    server.fail("/data/openai", 404)
    server.serve(
        "/data/category-ai-!cn", (V2FLY / "category-ai-!cn").read_text() + "x.example\n", etag='"r2"'
    )
    report = run([v2fly_feed(server)], tmp_path)
    assert (report.exit_code, report.outcomes[0].status) == (1, "failed")
    assert "/data/openai: HTTP 404" in (report.outcomes[0].error or "")
    assert StoredFeeds.read(tmp_path).entries("ai") == good


# -------------------------------------------------------------------------------------------- atomicity


def test_a_crash_before_the_manifest_commit_leaves_the_old_feed(
    server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.serve("/plain.txt", LIST)
    run([domains_feed(server)], tmp_path)
    good = StoredFeeds.read(tmp_path).entries("plain")
    manifest_before = (tmp_path / "manifest.json").read_bytes()

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("killed between the data write and the manifest write")

    monkeypatch.setattr(store_module, "write_manifest", crash)
    server.serve("/plain.txt", LIST.replace("host1.example", "other.example"))
    with pytest.raises(KeyboardInterrupt):
        run([domains_feed(server)], tmp_path)
    monkeypatch.undo()
    # The new data file was written, but the manifest (the commit point) still names the old one.
    assert len(list(tmp_path.glob("plain.*.list"))) == 2
    assert (tmp_path / "manifest.json").read_bytes() == manifest_before
    assert StoredFeeds.read(tmp_path).entries("plain") == good
    assert_consistent(tmp_path)
    # The next run commits the same content (same name); the one after removes the replaced file.
    assert run([domains_feed(server)], tmp_path).outcomes[0].status == "ok"
    assert "+other.example" in StoredFeeds.read(tmp_path).entries("plain").lines()
    assert_consistent(tmp_path)
    run([domains_feed(server)], tmp_path)
    assert len(list(tmp_path.glob("plain.*.list"))) == 1


def test_a_crash_while_writing_data_changes_nothing(
    server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.serve("/plain.txt", LIST)
    run([domains_feed(server)], tmp_path)
    before = snapshot(tmp_path)
    real_replace = store_module.write_atomic.__globals__["os"].replace

    def crash_on_replace(source: str, target: str) -> None:
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(store_module.write_atomic.__globals__["os"], "replace", crash_on_replace)
    server.serve("/plain.txt", LIST.replace("host1.example", "other.example"))
    with pytest.raises(KeyboardInterrupt):
        run([domains_feed(server)], tmp_path)
    monkeypatch.setattr(store_module.write_atomic.__globals__["os"], "replace", real_replace)
    assert snapshot(tmp_path) == before  # the temporary file was removed, nothing else moved
    assert_consistent(tmp_path)


def test_feed_by_feed_commits(server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the first feed's commit leaves that feed new and the other one old."""
    server.serve("/a.txt", LIST)
    server.serve("/b.txt", LIST)
    feeds = [domains_feed(server, "a", "/a.txt"), domains_feed(server, "b", "/b.txt")]
    run(feeds, tmp_path)
    server.serve("/a.txt", LIST + "new-a.example\n")
    server.serve("/b.txt", LIST + "new-b.example\n")
    real_write = store_module.write_manifest
    commits: list[str] = []

    def crash_on_second(data_dir: Path, manifest: object) -> None:
        commits.append("commit")
        if len(commits) == 2:
            raise KeyboardInterrupt("killed before the second feed's commit")
        real_write(data_dir, manifest)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "write_manifest", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(feeds, tmp_path)
    monkeypatch.undo()
    lines = {name: StoredFeeds.read(tmp_path).entries(name).lines() for name in ("a", "b")}
    assert ("+new-a.example" in lines["a"]) != ("+new-b.example" in lines["b"])  # one new, one old
    assert_consistent(tmp_path)


def test_runs_exclude_each_other(tmp_path: Path) -> None:
    with DataStore(tmp_path), pytest.raises(FeedError, match="another lists update is running"):
        DataStore(tmp_path).__enter__()


def test_a_damaged_manifest_is_recovered(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST, etag='"v1"')
    run([domains_feed(server)], tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    report = run([domains_feed(server)], tmp_path)
    assert report.outcomes[0].status == "ok"
    assert "if-none-match" not in server.last("/plain.txt").headers
    assert json.loads((tmp_path / "manifest.json").read_text())["feeds"]["plain"]["status"] == "ok"
    assert_consistent(tmp_path)


def test_a_full_disk_fails_the_feed_not_the_run(
    server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.serve("/plain.txt", LIST)
    run([domains_feed(server)], tmp_path)
    good = StoredFeeds.read(tmp_path).entries("plain")

    def disk_full(path: Path, text: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "write_atomic", disk_full)
    server.serve("/plain.txt", LIST + "more.example\n")
    report = run([domains_feed(server)], tmp_path)
    assert (report.exit_code, report.outcomes[0].status) == (1, "failed")
    assert "No space left on device" in (report.outcomes[0].error or "")
    assert StoredFeeds.read(tmp_path).entries("plain") == good
