"""The text report of an update run: one line per feed, rejected lines, the review queue, a summary."""

from __future__ import annotations

from blockdns.feeds.manifest import Manifest
from blockdns.feeds.update import FeedOutcome, UpdateReport

MAX_ISSUES_SHOWN = 5
MAX_REVIEW_SHOWN = 25


def _feed_line(outcome: FeedOutcome, width: int) -> str:
    name = outcome.name.ljust(width)
    if outcome.bad:
        kept = f"kept last good data: {outcome.total} entries" if outcome.total else "no earlier data"
        return f"  {name}  {outcome.status:<9}  {outcome.error} ({kept})"
    counts = f"+{outcome.added} -{outcome.removed} ={outcome.total} (rejected {outcome.rejected})"
    if outcome.skipped:
        counts += f" (skipped {outcome.skipped})"
    return f"  {name}  {outcome.status:<9}  {counts}"


def render_report(report: UpdateReport) -> str:
    outcomes = report.outcomes
    lines = []
    title = "lists update (dry run: nothing written)" if report.dry_run else "lists update"
    lines.append(f"{title}: {len(outcomes)} enabled feed{'s' if len(outcomes) != 1 else ''}")
    width = max((len(outcome.name) for outcome in outcomes), default=0)
    lines += [_feed_line(outcome, width) for outcome in outcomes]
    with_issues = [outcome for outcome in outcomes if outcome.issues]
    if with_issues:
        lines.append("rejected lines:")
        for outcome in with_issues:
            lines += [f"  {issue}" for issue in outcome.issues[:MAX_ISSUES_SHOWN]]
            if outcome.rejected > MAX_ISSUES_SHOWN:
                lines.append(f"  {outcome.name}: ... and {outcome.rejected - MAX_ISSUES_SHOWN} more")
    if report.review:
        count = sum(len(names) for names in report.review.values())
        lines.append(
            f"review queue: {count} new name{'s' if count != 1 else ''} that no catalogue vendor covers"
        )
        for feed, names in report.review.items():
            shown = ", ".join(names[:MAX_REVIEW_SHOWN])
            more = f" ... and {len(names) - MAX_REVIEW_SHOWN} more" if len(names) > MAX_REVIEW_SHOWN else ""
            lines.append(f"  {feed}: {shown}{more}")
    bad = [outcome for outcome in outcomes if outcome.bad]
    if bad:
        kept = [outcome.name for outcome in bad if outcome.total]
        empty = [outcome.name for outcome in bad if not outcome.total]
        lines.append(
            f"{len(bad)} of {len(outcomes)} feeds failed or were refused: {_kept_or_not(kept, empty)}"
        )
    return "\n".join(lines)


def failed_feeds_summary(manifest: Manifest) -> str | None:
    """One line on the feeds the last update could not refresh (for the server's log), or None."""
    bad = {name: state for name, state in manifest.feeds.items() if state.status in ("failed", "refused")}
    if not bad:
        return None
    kept = [name for name, state in bad.items() if state.file]
    empty = [name for name, state in bad.items() if not state.file]
    count = "1 feed failed or was refused" if len(bad) == 1 else f"{len(bad)} feeds failed or were refused"
    return f"{count}: {_kept_or_not(kept, empty)}"


def _kept_or_not(kept: list[str], empty: list[str]) -> str:
    """Which failed feeds keep their last good data and which have never had any (a first start offline)."""
    parts = []
    if kept:
        parts.append(f"{', '.join(kept)} keep{'s' if len(kept) == 1 else ''} the last good data")
    if empty:
        parts.append(f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no data yet")
    return "; ".join(parts)
