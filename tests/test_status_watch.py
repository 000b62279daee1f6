"""`failover-router status --watch` and the status page in `status`.

- The drawing is a pure function of a scripted history: each cell shows the worst state sampled in its
  stretch of time (a short opening is never hidden), distinct glyphs per state, the status page's word.
- The command itself, in a subprocess: an iteration limit ends it with exit 0; so does Ctrl-C (SIGINT)
  with no traceback; with `state: redis` it draws the fleet's breakers (one tripped by another process).
- Plain `status` and `--json` carry what the status page said and which models it concerns.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from router.breaker import BreakerInfo
from router.cli import main
from router.policy import ModelConfig, StatusPageConfig
from router.status_page import observer
from router.status_watch import CELLS, Sample, draw, strip
from router.testing.status_page import FakeStatusPage, incident, summary

ROOT = Path(__file__).resolve().parents[1]

CLOSED = BreakerInfo("closed", 0, None, None)


def _open(retry_at: float, forced: bool = False) -> BreakerInfo:
    return BreakerInfo("open", 3, retry_at - 10, None if forced else retry_at, forced=forced)


def _history() -> list[Sample]:
    """Ten minutes sampled every 10 s: opus closed, open for 60 s, half-open once, closed; sonnet forced
    open for the last two minutes; one instant of opus open within a closed stretch."""
    samples = []
    for i in range(61):
        t = 1000.0 + 10 * i
        opus = CLOSED
        if 300 <= t - 1000 < 360:
            opus = _open(1360.0)
        elif t - 1000 == 360:
            opus = BreakerInfo("half_open", 3, 1300.0, 1360.0, probe_in_flight=True)
        elif t - 1000 == 120:
            opus = _open(1130.0)  # a blip that the next sample no longer sees
        sonnet = _open(0.0, forced=True) if t - 1000 >= 480 else CLOSED
        samples.append(Sample(t, {"opus": opus, "sonnet": sonnet}))
    return samples


def test_a_strip_shows_the_worst_state_of_each_stretch_and_gaps_as_none() -> None:
    history = _history()
    cells = strip(history, "opus", 1000.0, 1600.0, 20)  # 30 s a cell: three samples in each
    assert cells[4] == "open"  # the blip at 120 s, among closed samples
    assert cells[10:12] == ["open", "open"] and cells[12] == "half_open"
    assert cells.count("closed") == 20 - 4
    assert strip(history, "sonnet", 1000.0, 1600.0, 20)[16:] == ["forced"] * 4
    assert strip(history[-3:], "opus", 1000.0, 1600.0, 20)[:18] == [None] * 18  # no samples there yet
    assert strip(history, "gone", 1000.0, 1600.0, 4) == ["unknown"] * 4  # a model no sample knows


def _render(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None, highlight=False).print(renderable)
    return out.getvalue()


def test_the_drawing_of_a_scripted_history() -> None:
    models = {"opus": ModelConfig("opus", "anthropic", "claude-opus-4-1"),
              "sonnet": ModelConfig("sonnet", "anthropic", "claude-sonnet-4-5")}
    page_json = json.dumps(summary(incident("Elevated errors on Claude Opus 4.1", "identified")))
    watcher = observer(StatusPageConfig("http://127.0.0.1:9/summary.json"), models,
                       _fixed_clock(1600.0), fetcher=lambda url, timeout, now: page_json.encode())
    page = watcher.poll_once()
    text = _render(draw(_history(), ["opus", "sonnet"], now=1600.0, minutes=10, cells=20, page=page))
    rows = {line.split()[0]: line for line in text.splitlines() if line.split()[:1] in (["opus"], ["sonnet"])}
    glyph = {state: CELLS[state][0] for state in ("closed", "open", "half_open", "forced")}
    c, o, h, f = glyph["closed"], glyph["open"], glyph["half_open"], glyph["forced"]
    assert rows["opus"].split()[1] == c * 4 + o + c * 5 + o * 2 + h + c * 7
    assert rows["opus"].split()[2:5] == [c, "closed", "0"]
    assert "identified: Elevated errors on Claude Opus 4.1" in rows["opus"]
    assert rows["sonnet"].split()[1] == c * 16 + f * 4 and f"{f} forced" in rows["sonnet"]
    assert "identified: Elevated" not in rows["sonnet"]
    assert "each cell 30s" in text and "last 10 min" in text
    assert "status page (read 0s ago)" in text and "names opus 4.1 -> opus" in text


def test_the_drawing_shows_the_next_probe_of_an_open_breaker_and_an_unreachable_redis() -> None:
    history = [Sample(100.0, {"m": _open(130.0)}, reachable=False)]
    text = _render(draw(history, ["m"], now=100.0, minutes=1, cells=10, shared=True))
    assert "in 30s" in text and "redis is unreachable" in text and "as the fleet sees them" in text
    assert "status page" not in text.split("\n", 2)[-1]  # no page configured: no page lines


def _fixed_clock(t: float) -> Any:
    from router.clock import Clock

    return Clock(now=lambda: t, sleep=lambda s: None, wall=lambda: 1_800_000_000.0 + t)


# ---- the command ----


def _policy(tmp_path: Path, page_url: str | None = None, redis_url: str | None = None) -> Path:
    text = textwrap.dedent("""\
        version: 1
        models:
          opus: {provider: anthropic, model: claude-opus-4-1, base_url: 'http://127.0.0.1:9', api_key: k}
          sonnet: {provider: anthropic, model: claude-sonnet-4-5, base_url: 'http://127.0.0.1:9', api_key: k}
        routes:
          default: [opus, sonnet]
        """)
    if page_url:
        text += f"status_page: {{url: '{page_url}', timeout: 500ms}}\n"
    if redis_url:
        text += f"state: {{redis: {{url: '{redis_url}', prefix: watchtest}}}}\n"
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    return subprocess.Popen([sys.executable, "-m", "router", "status", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_status_watch_stops_after_count_refreshes_with_exit_0(tmp_path: Path) -> None:
    proc = _cli(str(_policy(tmp_path)), "--watch", "--interval", "50ms", "--count", "3", "--minutes", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.count("each cell") == 3 and out.count("opus ") == 3
    assert "Traceback" not in err


def test_status_watch_ends_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc = _cli(str(_policy(tmp_path)), "--watch", "--interval", "50ms")
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # the first frame is drawn: the loop is running
            if "each cell" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_status_watch_draws_the_fleets_breakers_and_the_status_page(tmp_path: Path, redis_server: Any) -> None:
    from router.policy import BreakerConfig
    from router.redis_store import RedisStore

    other = RedisStore(redis_server.url, prefix="watchtest")  # another process of the fleet
    try:
        other.configure("opus", BreakerConfig())
        assert other.trip("opus", 0.0)
    finally:
        other.close()
    with FakeStatusPage() as page:
        page.show(summary(incident("Elevated errors on Claude Opus 4.1")))
        path = _policy(tmp_path, page.url, redis_server.url)
        proc = _cli(str(path), "--watch", "--interval", "200ms", "--count", "4")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    last = out.strip().split("\n\n")[-1]
    rows = {line.split()[0]: line for line in last.splitlines() if line.split()[:1] in (["opus"], ["sonnet"])}
    assert f"{CELLS['open'][0]} open" in rows["opus"] and "investigating: Elevated errors" in rows["opus"]
    assert f"{CELLS['closed'][0]} closed" in rows["sonnet"]
    assert "as the fleet sees them" in last and "names opus 4.1 -> opus" in last


def test_plain_status_and_json_carry_the_status_pages_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with FakeStatusPage() as page:
        page.show(summary(incident("Elevated errors on Claude Sonnet 4.5", id="s1")))
        url = page.url
        path = str(_policy(tmp_path, url))
        assert main(["status", path]) == 0
        out = capsys.readouterr().out
        assert "status page (read" in out and "names sonnet 4.5 -> sonnet" in out
        assert main(["status", path, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        page.fail(500)
        assert main(["status", path, "--json"]) == 0  # an unreadable page is said, and changes no exit status
        failed = json.loads(capsys.readouterr().out)["status_page"]
    sp = doc["status_page"]
    assert sp["ok"] is True and sp["indicator"] == "major" and sp["url"] == url
    assert sp["concerns"] == [{"incident": "s1", "title": "Elevated errors on Claude Sonnet 4.5",
                               "status": "investigating", "models": ["sonnet"], "why": "names sonnet 4.5",
                               "acting": True}]
    assert sp["acted"] == []  # the command reads the page; it acts on nothing
    assert failed["ok"] is False and failed["error"] == "HTTP 500"
    assert main(["status", str(_policy(tmp_path)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status_page"] is None


@pytest.mark.parametrize("bad", [["--interval", "soon"], ["--interval", "0s"], ["--count", "0"], ["--minutes", "-1"]])
def test_bad_watch_arguments_are_refused(tmp_path: Path, bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["status", str(_policy(tmp_path)), "--watch", *bad])
    assert exc.value.code == 2 and bad[0] in capsys.readouterr().err
