"""``blockdns.catalog_lint`` and ``blockdns lists lint`` on small catalogues written to tmp_path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blockdns.catalog_lint import Finding, lint
from blockdns.cli.main import app
from blockdns.errors import CatalogError

TODAY = dt.date(2026, 11, 27)
GUARD = """
[[guard]]
name = "google.com"
note = "search, mail and much else"
"""


def vendor_text(
    domains: list[tuple[str, str]] | None = None,
    *,
    jurisdiction: str = "US",
    categories: str = '["chat"]',
    reviewed: str = "2026-11-01",
    extra: str = "",
    shared: tuple[str, ...] = (),
) -> str:
    """A vendor file; each domain is (name, evidence), where evidence None leaves the key out."""
    lines = [
        'name = "Example"',
        f'jurisdiction = "{jurisdiction}"',
        f"categories = {categories}",
        'homepage = "https://example.test"',
        f"reviewed = {reviewed}",
        extra,
    ]
    for name, evidence in domains or [("vendor.example", "https://vendor.example/docs")]:
        lines += ["[[domains]]", f'name = "{name}"']
        if evidence is not None:
            lines.append(f'evidence = "{evidence}"')
    for name in shared:
        lines += ["[[shared]]", f'name = "{name}"', 'note = "shared by everyone"']
    return "\n".join(lines) + "\n"


@pytest.fixture
def lists(tmp_path: Path) -> Path:
    """``lists/`` with a guard file and an empty ``vendors/``; tests add vendor files."""
    (tmp_path / "lists" / "vendors").mkdir(parents=True)
    (tmp_path / "lists" / "guard.toml").write_text(GUARD)
    return tmp_path / "lists"


def write(lists: Path, vendor_id: str, text: str) -> Path:
    path = lists / "vendors" / f"{vendor_id}.toml"
    path.write_text(text)
    return path


def run_lint(lists: Path) -> list[Finding]:
    return lint(lists / "vendors", today=TODAY)


def messages(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return [(finding.file.stem, finding.key, finding.message) for finding in findings]


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [str(finding) for finding in findings]
    return findings[0]


# ---------------------------------------------------------------------------------------- each check


def test_a_good_catalogue_has_no_findings(lists: Path) -> None:
    write(lists, "alpha", vendor_text([("alpha.example", "https://alpha.example/api")]))
    write(lists, "beta", vendor_text([("beta.example", "v2fly/domain-list-community data/beta")]))
    write(lists, "various", vendor_text([("doh.example", "https://doh.example/docs")], jurisdiction="ZZ"))
    assert run_lint(lists) == []


def test_same_domain_under_two_vendors(lists: Path) -> None:
    write(lists, "alpha", vendor_text([("shared-ai.example", "https://alpha.example/docs")]))
    write(lists, "beta", vendor_text([("shared-ai.example", "https://beta.example/docs")]))
    found = messages(run_lint(lists))
    assert found == [
        ("alpha", "domains.0.name", "'shared-ai.example' is also listed by vendor beta"),
        ("beta", "domains.0.name", "'shared-ai.example' is also listed by vendor alpha"),
    ]


def test_a_name_below_another_vendors_entry(lists: Path) -> None:
    write(lists, "alpha", vendor_text([("alpha.example", "https://alpha.example/docs")]))
    write(lists, "beta", vendor_text([("api.alpha.example", "https://beta.example/docs")]))
    finding = only(run_lint(lists))
    assert finding.file.stem == "beta"
    assert "lies below 'alpha.example', listed by vendor alpha" in finding.message


def test_public_suffix(lists: Path) -> None:
    write(lists, "alpha", vendor_text([("co.uk", "https://alpha.example/docs")]))
    finding = only(run_lint(lists))
    assert (finding.key, finding.severity) == ("domains.0.name", "error")
    assert "'co.uk' is a public suffix" in finding.message


def test_private_public_suffix_needs_acknowledgement(lists: Path) -> None:
    psl = "publicsuffix/list public_suffix_list.dat"
    write(lists, "alpha", vendor_text([("hf.space", psl)]))
    assert "private section of the Public Suffix List" in only(run_lint(lists)).message
    write(
        lists,
        "alpha",
        vendor_text([("hf.space", psl)]).replace(
            f'evidence = "{psl}"', f'evidence = "{psl}"\npublic_suffix = true'
        ),
    )
    assert run_lint(lists) == []


def test_public_suffix_acknowledgement_never_excuses_an_icann_suffix(lists: Path) -> None:
    text = vendor_text([("co.uk", "https://alpha.example/docs")]).replace(
        "[[domains]]", "[[domains]]\npublic_suffix = true"
    )
    write(lists, "alpha", text)
    assert "'co.uk' is a public suffix" in only(run_lint(lists)).message


def test_public_suffix_acknowledgement_on_an_ordinary_name(lists: Path) -> None:
    text = vendor_text().replace("[[domains]]", "[[domains]]\npublic_suffix = true")
    write(lists, "alpha", text)
    finding = only(run_lint(lists))
    assert (finding.key, finding.message) == (
        "domains.0.public_suffix",
        "'vendor.example' is not a public suffix",
    )


def test_guarded_name_from_the_guard_list(lists: Path) -> None:
    write(lists, "alpha", vendor_text([("google.com", "https://alpha.example/docs")]))
    finding = only(run_lint(lists))
    assert finding.key == "domains.0.name"
    assert "'google.com' is guarded (guard list: search, mail and much else)" in finding.message


def test_parent_of_a_guarded_name_from_another_vendors_shared(lists: Path) -> None:
    write(lists, "alpha", vendor_text(shared=("captcha.cdn.example",)))
    write(lists, "beta", vendor_text([("cdn.example", "https://beta.example/docs")]))
    finding = only(run_lint(lists))
    assert finding.file.stem == "beta"
    assert "covers the guarded name 'captcha.cdn.example' ([[shared]] of vendor alpha" in finding.message


def test_an_exact_entry_above_a_guarded_name_covers_nothing(lists: Path) -> None:
    text = vendor_text([("cdn.example", "https://alpha.example/docs")], shared=("captcha.cdn.example",))
    write(lists, "alpha", text.replace('name = "cdn.example"', 'name = "cdn.example"\nmatch = "exact"'))
    assert run_lint(lists) == []


def test_missing_and_blank_evidence(lists: Path) -> None:
    write(lists, "alpha", vendor_text([("one.example", None), ("two.example", "   ")]))
    found = messages(run_lint(lists))
    assert [(key, message.split(":")[0]) for _, key, message in found] == [
        ("domains.0.evidence", "evidence is missing"),
        ("domains.1.evidence", "evidence is blank"),
    ]


def test_evidence_must_be_a_url_or_a_repository_reference(lists: Path) -> None:
    write(
        lists,
        "alpha",
        vendor_text(
            [
                ("one.example", "seen in a capture"),
                ("two.example", "ftp://files.example/list"),
                ("three.example", "v2fly/domain-list-community"),
                ("four.example", "laylavish/uBlockOrigin-HUGE-AI-Blocklist list.txt"),
                ("five.example", "https://five.example/docs"),
            ]
        ),
    )
    assert [finding.key for finding in run_lint(lists)] == [
        "domains.0.evidence",
        "domains.1.evidence",
        "domains.2.evidence",
    ]


def test_unknown_country_code(lists: Path) -> None:
    write(lists, "alpha", vendor_text(jurisdiction="XX"))
    finding = only(run_lint(lists))
    assert finding.key == "jurisdiction"
    assert "unknown country code 'XX'" in finding.message


def test_unknown_category(lists: Path) -> None:
    write(lists, "alpha", vendor_text(categories='["chat", "crypto"]'))
    finding = only(run_lint(lists))
    assert finding.key == "categories.1"
    assert finding.message.startswith("unknown category 'crypto'; one of chat, api, coding")


def test_toml_syntax_error_names_the_line(lists: Path) -> None:
    write(lists, "alpha", 'name = "Alpha"\njurisdiction = "US\n')
    finding = only(run_lint(lists))
    assert (finding.key, finding.line) == ("line 2", 2)
    assert finding.message.startswith("not valid TOML")


def test_reviewed_in_the_future(lists: Path) -> None:
    write(lists, "alpha", vendor_text(reviewed="2026-11-28"))
    finding = only(run_lint(lists))
    assert (finding.key, finding.message) == (
        "reviewed",
        "reviewed 2026-11-28 is in the future (today is 2026-11-27)",
    )


def test_redundant_and_repeated_entries_are_warnings(lists: Path) -> None:
    write(
        lists,
        "alpha",
        vendor_text(
            [
                ("alpha.example", "https://alpha.example/docs"),
                ("api.alpha.example", "https://alpha.example/api"),
                ("alpha.example", "https://alpha.example/docs"),
            ]
        ),
    )
    findings = run_lint(lists)
    assert {finding.severity for finding in findings} == {"warning"}
    assert [(finding.key, finding.message) for finding in findings] == [
        (
            "domains.1.name",
            "'api.alpha.example' is redundant: domains.0.name 'alpha.example' already covers it",
        ),
        ("domains.2.name", "'alpha.example' is listed twice (also domains.0.name)"),
    ]


def test_schema_problems(lists: Path) -> None:
    write(lists, "Bad_Id", vendor_text([("bad..name", "https://x.example/docs")], extra='colour = "red"'))
    found = [(key, message) for _, key, message in messages(run_lint(lists))]
    assert found == [
        ("(file name)", "a vendor id (the file's stem) is lowercase letters, digits and '-'"),
        ("colour", "unknown key"),
        ("domains.0.name", "empty label in 'bad..name'"),
    ]


def test_lint_keeps_going_past_broken_files(lists: Path) -> None:
    write(lists, "alpha", "this is not toml")
    write(lists, "beta", vendor_text(jurisdiction="XX"))
    write(lists, "gamma", vendor_text([("co.uk", "https://gamma.example/docs")]))
    write(lists, "delta", 'name = "Delta"\n')
    files = {finding.file.stem for finding in run_lint(lists)}
    assert files == {"alpha", "beta", "gamma", "delta"}


def test_a_bad_guard_file_is_reported(lists: Path) -> None:
    (lists / "guard.toml").write_text(
        '[[guard]]\nname = "bad..name"\nnote = "x"\n[[guard]]\nname = "ok.example"\n'
    )
    write(lists, "alpha", vendor_text())
    found = [(finding.file.name, finding.key) for finding in run_lint(lists)]
    assert found == [("guard.toml", "guard.0.name"), ("guard.toml", "guard.1.note")]


def test_a_named_guard_file_must_exist(lists: Path) -> None:
    write(lists, "alpha", vendor_text())
    finding = only(lint(lists / "vendors", lists / "missing-guard.toml", today=TODAY))
    assert finding.file.name == "missing-guard.toml"
    assert finding.message == "no such file"


def test_a_missing_catalogue_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalogue directory not found"):
        lint(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------- CLI


def config_for(lists: Path) -> Path:
    path = lists.parent / "blockdns.toml"
    path.write_text(f'[lists]\ncatalog = "{lists / "vendors"}"\nguard = "{lists / "guard.toml"}"\n')
    return path


def test_lists_lint_prints_each_problem_and_exits_1(lists: Path) -> None:
    write(
        lists,
        "alpha",
        vendor_text([("shared-ai.example", "https://alpha.example/docs"), ("google.com", "https://a/docs")]),
    )
    write(lists, "beta", vendor_text([("shared-ai.example", "https://beta.example/docs")], jurisdiction="XX"))
    write(lists, "gamma", "not = [toml")
    result = CliRunner().invoke(app, ["lists", "lint", "--config", str(config_for(lists))])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    vendors = lists / "vendors"
    assert (
        f"{vendors / 'alpha.toml'}:domains.0.name: 'shared-ai.example' is also listed by vendor beta" in lines
    )
    assert any(
        line.startswith(f"{vendors / 'alpha.toml'}:domains.1.name: 'google.com' is guarded") for line in lines
    )
    assert any(
        line.startswith(f"{vendors / 'beta.toml'}:jurisdiction: unknown country code 'XX'") for line in lines
    )
    assert any(line.startswith(f"{vendors / 'gamma.toml'}:line 1: not valid TOML") for line in lines)
    assert lines[-1] == "5 problems (5 errors, 0 warnings) in 3 files"


def test_lists_lint_exits_0_on_a_clean_catalogue(lists: Path) -> None:
    write(lists, "alpha", vendor_text())
    result = CliRunner().invoke(app, ["lists", "lint", "--config", str(config_for(lists))])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("catalogue clean: 1 vendor files")


def test_lists_lint_with_a_missing_catalogue_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "blockdns.toml"
    config.write_text('[lists]\ncatalog = "no-such-dir"\n')
    result = CliRunner().invoke(app, ["lists", "lint", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"blockdns: {tmp_path / 'no-such-dir'}: catalogue directory not found"
    ]


def test_lists_vendors_with_a_broken_vendor_file_is_one_line_and_exit_2(lists: Path) -> None:
    write(lists, "alpha", vendor_text(jurisdiction="XX"))
    result = CliRunner().invoke(app, ["lists", "vendors", "--config", str(config_for(lists))])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"blockdns: {lists / 'vendors' / 'alpha.toml'}: jurisdiction: unknown country code 'XX'"
    )


def test_a_general_list_is_never_the_only_evidence(tmp_path: Path) -> None:
    vendors = tmp_path / "vendors"
    vendors.mkdir()
    (vendors / "acme.toml").write_text(
        'name = "Acme"\njurisdiction = "US"\ncategories = ["chat"]\nhomepage = "https://acme.example"\n'
        "reviewed = 2026-01-01\n"
        '[[domains]]\nname = "chat.acme.example"\nevidence = "v2fly/domain-list-community data/bing"\n'
        '[[domains]]\nname = "dns.acme.example"\n'
        'evidence = "hagezi/dns-blocklists domains/doh-vpn-proxy-bypass.txt"\n'
        '[[domains]]\nname = "api.acme.example"\n'
        'evidence = "v2fly/domain-list-community data/category-ai-!cn"\n'
    )
    findings = [(f.key, f.message) for f in lint(vendors, today=dt.date(2026, 6, 1))]
    assert [key for key, _ in findings] == ["domains.0.evidence", "domains.1.evidence"]
    assert "not AI services" in findings[0][1] and "ways around a resolver" in findings[1][1]


def test_a_landing_page_is_not_evidence(lists: Path) -> None:
    landing = [
        "https://elicit.com/",
        "https://elicit.com",
        "https://docs.acme.example/en",
        "https://docs.acme.example/zh-CN/",
        "https://www.acme.example/index.html",
        "https://acme.example/#pricing",
    ]
    specific = [
        "https://docs.acme.example/reference/chat",
        "https://docs.acme.example/en/api-reference",
        "https://acme.example/?page=firewall",
        "https://acme.example/faq",
    ]
    evidence = landing + specific
    write(lists, "alpha", vendor_text([(f"n{i}.acme.example", url) for i, url in enumerate(evidence)]))
    findings = run_lint(lists)
    assert [finding.key for finding in findings] == [f"domains.{i}.evidence" for i in range(len(landing))]
    assert findings[0].message.startswith("evidence 'https://elicit.com/' is only a landing page: cite")
