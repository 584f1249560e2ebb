"""The compiled-catalogue cache: a hit decides exactly as the TOML files do, and a cache that does not match
them (changed files, damage, another version) is ignored and rebuilt, never trusted."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blockdns
from blockdns import catalog_cache, config
from blockdns.catalog import Catalog, load_catalog
from blockdns.catalog_cache import CACHE_NAME, load_compiled_catalog
from blockdns.catalog_compiled import CompiledCatalog
from blockdns.policy import Policy, compile_policy
from blockdns.runtime import build_policy

LISTS = Path(__file__).resolve().parent.parent / "lists"
BLOCK = ["all", "category:bypass", "jurisdiction:CN"]
ALLOW = ["vendor:microsoft-copilot", "domain:api.openai.com"]


def copy_lists(root: Path) -> tuple[Path, Path]:
    """The shipped vendor files and guard list under ``root``, and an empty data dir beside them."""
    (root / "data").mkdir()
    shutil.copytree(LISTS / "vendors", root / "vendors")
    shutil.copy(LISTS / "guard.toml", root / "guard.toml")
    return root / "vendors", root / "guard.toml"


class CountingLoads:
    """Stands in for load_catalog in the cache module and counts the TOML loads it is asked for."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, directory: Path | None = None, guard_file: Path | None = None) -> Catalog:
        self.calls += 1
        return load_catalog(directory, guard_file)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> CountingLoads:
    counting = CountingLoads()
    monkeypatch.setattr(catalog_cache, "load_catalog", counting)
    return counting


@pytest.fixture(scope="module")
def fresh_and_cached(tmp_path_factory: pytest.TempPathFactory) -> tuple[Policy, Policy]:
    root = tmp_path_factory.mktemp("lists")
    vendors, guard = copy_lists(root)
    fresh = compile_policy(load_catalog(vendors, guard), BLOCK, ALLOW)
    load_compiled_catalog(vendors, guard, root / "data")  # writes the cache
    assert (root / "data" / CACHE_NAME).exists()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalog_cache, "load_catalog", None)  # a TOML load would fail: this is a hit
        cached = load_compiled_catalog(vendors, guard, root / "data")
    return fresh, compile_policy(cached, BLOCK, ALLOW)


def catalogue_names() -> list[str]:
    catalog = load_catalog(LISTS / "vendors", LISTS / "guard.toml")
    names = [entry.name for vendor in catalog.vendors.values() for entry in vendor.domains]
    return names + list(catalog.guarded_names())


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
NAMES = st.one_of(
    st.sampled_from(catalogue_names()),
    st.tuples(LABEL, st.sampled_from(catalogue_names())).map(".".join),
    st.lists(LABEL, min_size=1, max_size=4).map(".".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_a_cache_hit_decides_every_name_as_a_fresh_compile(
    fresh_and_cached: tuple[Policy, Policy], name: str
) -> None:
    fresh, cached = fresh_and_cached
    assert cached.decide(name).to_json() == fresh.decide(name).to_json()


def test_the_cached_policy_holds_what_the_fresh_one_does(fresh_and_cached: tuple[Policy, Policy]) -> None:
    fresh, cached = fresh_and_cached
    assert dict(cached.default.domains) == dict(fresh.default.domains)
    assert cached.guarded == fresh.guarded and cached.dropped_by_guard == fresh.dropped_by_guard


def test_a_second_start_parses_no_toml(tmp_path: Path, loads: CountingLoads) -> None:
    vendors, guard = copy_lists(tmp_path)
    first = load_compiled_catalog(vendors, guard, tmp_path / "data")
    second = load_compiled_catalog(vendors, guard, tmp_path / "data")
    assert loads.calls == 1
    assert second == first and isinstance(second, CompiledCatalog)


def test_build_policy_keeps_the_cache_in_the_data_dir(tmp_path: Path, loads: CountingLoads) -> None:
    vendors, guard = copy_lists(tmp_path)
    (tmp_path / "feeds.toml").write_text("")
    lists = {"catalog": str(vendors), "guard": str(guard), "feeds": str(tmp_path / "feeds.toml")}
    settings_ = config.from_dict({"lists": lists | {"data_dir": str(tmp_path / "data")}})
    assert build_policy(settings_).decide("chat.deepseek.com").blocked
    assert build_policy(settings_).decide("chat.deepseek.com").blocked
    assert loads.calls == 1
    assert (tmp_path / "data" / CACHE_NAME).exists()


def test_a_changed_vendor_file_invalidates_the_cache(tmp_path: Path, loads: CountingLoads) -> None:
    vendors, guard = copy_lists(tmp_path)
    load_compiled_catalog(vendors, guard, tmp_path / "data")
    deepseek = vendors / "deepseek.toml"
    deepseek.write_text(deepseek.read_text() + '\n[[domains]]\nname = "new-host.test"\nevidence = "x/y z"\n')
    policy = compile_policy(load_compiled_catalog(vendors, guard, tmp_path / "data"), ["vendor:deepseek"])
    assert policy.decide("a.new-host.test").blocked
    assert loads.calls == 2


def test_an_edit_keeping_size_and_mtime_still_invalidates_the_cache(
    tmp_path: Path, loads: CountingLoads
) -> None:
    vendors, guard = copy_lists(tmp_path)
    deepseek = vendors / "deepseek.toml"
    text = deepseek.read_text()
    assert 'name = "deepseek.com"' in text
    load_compiled_catalog(vendors, guard, tmp_path / "data")
    before = deepseek.stat()
    deepseek.write_text(text.replace('name = "deepseek.com"', 'name = "deepseek.org"', 1))
    os.utime(deepseek, ns=(before.st_atime_ns, before.st_mtime_ns))  # what `touch -r` would do
    assert deepseek.stat().st_size == before.st_size
    policy = compile_policy(load_compiled_catalog(vendors, guard, tmp_path / "data"), ["vendor:deepseek"])
    assert policy.decide("deepseek.org").blocked
    assert loads.calls == 2


def test_a_new_vendor_file_and_a_changed_guard_file_invalidate_the_cache(
    tmp_path: Path, loads: CountingLoads
) -> None:
    vendors, guard = copy_lists(tmp_path)
    load_compiled_catalog(vendors, guard, tmp_path / "data")
    shutil.copy(vendors / "deepseek.toml", vendors / "deepseek-copy.toml")
    assert "deepseek-copy" in load_compiled_catalog(vendors, guard, tmp_path / "data").vendors
    guard.write_text(guard.read_text() + '\n[[guard]]\nname = "deepseek.com"\nnote = "test"\n')
    policy = compile_policy(load_compiled_catalog(vendors, guard, tmp_path / "data"), ["vendor:deepseek"])
    assert not policy.decide("deepseek.com").blocked
    assert loads.calls == 3


def test_a_bad_vendor_file_fails_even_with_a_cache(tmp_path: Path) -> None:
    vendors, guard = copy_lists(tmp_path)
    load_compiled_catalog(vendors, guard, tmp_path / "data")
    (vendors / "deepseek.toml").write_text('name = "DeepSeek"\n[[domains]\n')
    with pytest.raises(blockdns.errors.CatalogError, match="not valid TOML"):
        load_compiled_catalog(vendors, guard, tmp_path / "data")


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_a_damaged_cache_is_ignored_with_a_log_line(
    tmp_path: Path, loads: CountingLoads, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    vendors, guard = copy_lists(tmp_path)
    fresh = load_compiled_catalog(vendors, guard, tmp_path / "data")
    cache = tmp_path / "data" / CACHE_NAME
    data = bytearray(cache.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"not a cache at all\n" * 10)
    cache.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="blockdns.catalog"):
        rebuilt = load_compiled_catalog(vendors, guard, tmp_path / "data")
    assert rebuilt == fresh
    assert loads.calls == 2
    assert any(
        "damaged" in record.getMessage() and str(cache) in record.getMessage() for record in caplog.records
    )
    load_compiled_catalog(vendors, guard, tmp_path / "data")  # rewritten: a hit again
    assert loads.calls == 2


def test_a_cache_from_another_blockdns_version_is_ignored(
    tmp_path: Path, loads: CountingLoads, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendors, guard = copy_lists(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(blockdns, "__version__", "0.0.1-older")
        load_compiled_catalog(vendors, guard, tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="blockdns.catalog"):
        load_compiled_catalog(vendors, guard, tmp_path / "data")
    assert loads.calls == 2
    assert any("0.0.1-older" in record.getMessage() for record in caplog.records)


def test_a_cache_of_another_format_is_ignored(
    tmp_path: Path, loads: CountingLoads, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendors, guard = copy_lists(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(catalog_cache, "FORMAT", catalog_cache.FORMAT + 1)
        load_compiled_catalog(vendors, guard, tmp_path / "data")
    load_compiled_catalog(vendors, guard, tmp_path / "data")
    assert loads.calls == 2


def test_an_unwritable_data_dir_only_logs(
    tmp_path: Path, loads: CountingLoads, caplog: pytest.LogCaptureFixture
) -> None:
    vendors, guard = copy_lists(tmp_path)
    (tmp_path / "data").rmdir()
    (tmp_path / "data").write_text("a file where the data dir should be")
    with caplog.at_level(logging.INFO, logger="blockdns.catalog"):
        compiled = load_compiled_catalog(vendors, guard, tmp_path / "data")
    assert "deepseek" in compiled.vendors
    assert any("not kept" in record.getMessage() for record in caplog.records)


def test_a_missing_data_dir_is_not_created(tmp_path: Path, loads: CountingLoads) -> None:
    vendors, guard = copy_lists(tmp_path)
    assert "deepseek" in load_compiled_catalog(vendors, guard, tmp_path / "nowhere" / "data").vendors
    assert "deepseek" in load_compiled_catalog(vendors, guard, tmp_path / "nowhere" / "data").vendors
    assert not (tmp_path / "nowhere").exists()
    assert loads.calls == 2


def test_a_read_only_data_dir_only_logs(
    tmp_path: Path, loads: CountingLoads, caplog: pytest.LogCaptureFixture
) -> None:
    vendors, guard = copy_lists(tmp_path)
    (tmp_path / "data" / CACHE_NAME).mkdir()  # a directory where the cache file goes: the rename fails
    with caplog.at_level(logging.INFO, logger="blockdns.catalog"):
        assert "deepseek" in load_compiled_catalog(vendors, guard, tmp_path / "data").vendors
    assert any("cannot write" in record.getMessage() for record in caplog.records)


def test_check_reads_the_evidence_from_the_vendor_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from blockdns.cli.main import app

    vendors, guard = copy_lists(tmp_path)
    (tmp_path / "feeds.toml").write_text("")
    path = tmp_path / "blockdns.toml"
    path.write_text(
        f'[policy]\nblock = ["all", "domain:example.org"]\n'
        f'[lists]\ncatalog = "{vendors}"\nguard = "{guard}"\n'
        f'feeds = "{tmp_path / "feeds.toml"}"\ndata_dir = "{tmp_path / "data"}"\n'
    )
    evidence = "CherryHQ/cherry-studio src/renderer/src/config/providers.ts"

    def check(*args: str) -> str:
        result = CliRunner().invoke(app, ["check", *args, "--config", str(path)])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert f"  evidence: {evidence}\n" in check("chat.deepseek.com")
    check("chat.deepseek.com")  # from the cache now: the evidence still comes from the file
    assert json.loads(check("chat.deepseek.com", "--json"))["evidence"] == evidence
    assert json.loads(check("www.example.org", "--json"))["evidence"] is None  # the administrator's own word
    assert json.loads(check("example.net", "--json"))["evidence"] is None


def test_a_large_catalogue_is_compiled_in_a_child_process(
    tmp_path: Path, loads: CountingLoads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_cache, "CHILD_BUILD_BYTES", 0)  # every catalogue is large
    vendors, guard = copy_lists(tmp_path)
    compiled = load_compiled_catalog(vendors, guard, tmp_path / "data")
    assert loads.calls == 0  # this process parsed no TOML: the child did, and wrote the cache
    assert compiled == load_compiled_catalog(vendors, guard, None)  # no cache: parsed here
    loads.calls = 0
    (vendors / "deepseek.toml").write_text('name = "DeepSeek"\njurisdiction = "XX"\n')
    with pytest.raises(blockdns.errors.CatalogError, match=r"deepseek\.toml"):
        load_compiled_catalog(vendors, guard, tmp_path / "data")  # the child failed: this process says why
    assert loads.calls == 1


def test_a_same_size_edit_within_one_timestamp_tick_is_caught_by_the_content(
    tmp_path: Path, loads: CountingLoads, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendors, guard = copy_lists(tmp_path)
    key = catalog_cache.catalog_key(vendors, guard)
    load_compiled_catalog(vendors, guard, tmp_path / "data")
    deepseek = vendors / "deepseek.toml"
    deepseek.write_text(deepseek.read_text().replace('name = "deepseek.com"', 'name = "deepseek.org"', 1))
    # The second write landed in the same tick: every file's stat reads as it did when the cache was written.
    monkeypatch.setattr(catalog_cache, "catalog_key", lambda directory, guard_file: key)
    policy = compile_policy(load_compiled_catalog(vendors, guard, tmp_path / "data"), ["vendor:deepseek"])
    assert policy.decide("deepseek.org").blocked
    assert loads.calls == 2


def test_files_older_than_the_racy_window_are_not_hashed_again(tmp_path: Path) -> None:
    vendors, guard = copy_lists(tmp_path)
    key = catalog_cache.catalog_key(vendors, guard)
    assert len(catalog_cache.racy_digests(key, time.time_ns())) == len(key[1]) + 1  # all just written
    later = time.time_ns() + catalog_cache.RACY_NS + 1
    assert catalog_cache.racy_digests(key, later) == {}
