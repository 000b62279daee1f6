"""What a poll of the status page said, for people (rich markup lines) and for `--json` (plain data)."""

from __future__ import annotations

from typing import Any

from .watcher import PollResult

INDICATOR_STYLE = {"none": "green", "minor": "yellow", "major": "red", "critical": "bold red"}


def page_json(result: PollResult | None, url: str, now: float) -> dict[str, Any]:
    """The last poll as JSON-ready data; times are seconds before `now`."""
    if result is None:
        return {"url": url, "polled": False}
    summary = result.summary
    return {
        "url": url,
        "polled": True,
        "ok": result.ok,
        "error": result.error,
        "failures": result.failures,
        "polled_ago": round(now - result.at, 3),
        "read_ago": None if result.read_at is None else round(now - result.read_at, 3),
        "indicator": summary.indicator if summary else None,
        "description": summary.description if summary else None,
        "incidents": [{"id": i.id, "name": i.name, "status": i.status, "impact": i.impact}
                      for i in (summary.incidents if summary else ())],
        "concerns": [{"incident": f.key, "title": f.title, "status": f.status, "models": list(f.models),
                      "why": f.why, "acting": f.acting} for f in result.findings],
        "acted": [{"incident": k, "model": m, "action": a} for k, m, a in result.acted],
    }


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def page_lines(result: PollResult | None, now: float) -> list[str]:
    """A few lines of rich markup: what the page says, what it concerns, whether it could be read."""
    if result is None:
        return ["status page: not read yet"]
    lines = []
    summary = result.summary
    if not result.ok:
        lines.append(f"[red]status page: could not be read ({result.error}), {result.failures} time(s) in a "
                     f"row[/]; breakers are unchanged by it")
    if summary is not None and result.read_at is not None:
        style = INDICATOR_STYLE.get(summary.indicator, "yellow")
        said = f"[{style}]{summary.description or summary.indicator}[/]"
        lines.append(f"status page ({'read ' + _ago(now - result.read_at)}): {said}; "
                     f"{len(summary.incidents)} unresolved incident(s)")
    for finding in result.findings:
        lines.append(f"  [bold]{finding.title}[/] ({finding.status}): {finding.why} -> {', '.join(finding.models)}")
    return lines


def concerning(result: PollResult | None, alias: str) -> str:
    """The page's last word on one model: the status of the incidents that concern it, or ""."""
    if result is None:
        return ""
    return "; ".join(f"{f.status}: {f.title}" for f in result.findings if alias in f.models and f.ongoing)
