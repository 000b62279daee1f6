"""The `failover-router` command: demo --policy, argument checks, the live view's fit, validate's problems."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.live_render import LiveRender

from router.cli import main
from router.demo import DEMO_KEY, PLACEHOLDER, Demo, load_demo_policy, point_at, recovery_time, run_demo
from router.demo_view import View
from router.policy import BreakerConfig, PolicyError, load_policy
from router.testing import FakeServer

from .conftest import Clock

REPO = Path(__file__).resolve().parents[1]
UNSET = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "MY_PROXY_URL", "THRESHOLD", "DEMO_TEST_UNSET")


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m router ...` as a user runs it, with none of the UNSET variables set."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return subprocess.run(
        [sys.executable, "-m", "router", *args], capture_output=True, text=True, timeout=120, cwd=REPO, env=env
    )


@pytest.fixture
def unset_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)


# A user's policy: real endpoints, keys from variables unset here, a proxy model with the same model
# name as the primary, an OpenAI model through litellm, and a Gemini model outside the default route.
MINE = """\
    version: 1
    defaults:
      breaker: {failure_threshold: 2, reset_timeout: 1s, max_reset_timeout: 4s}
      retry: {attempts: 1}
    models:
      primary: {provider: anthropic, model: claude-opus-4-1, api_key: "${ANTHROPIC_API_KEY}"}
      proxied: {provider: anthropic, model: claude-opus-4-1, base_url: "${MY_PROXY_URL}",
                api_key: "${ANTHROPIC_API_KEY}", params: {extra: 1}}
      gpt:     {provider: litellm, model: openai/gpt-4.1, api_key: "${OPENAI_API_KEY}",
                params: {api_base: "https://api.openai.com/v1"}}
      gemini:  {provider: litellm, model: gemini/gemini-2.5-pro}
    routes:
      default: [primary, proxied, gpt]
      other: [gemini]
"""


# ---- demo --policy ----


def test_demo_plays_a_users_policy_on_the_fake_server_only(tmp_path: Path, unset_env: None) -> None:
    policy = load_demo_policy(write(tmp_path, MINE))
    played = point_at(policy, "http://127.0.0.1:9")
    assert list(played.routes) == ["default"] and list(played.models) == ["primary", "proxied", "gpt"]
    for alias, cfg in played.models.items():
        assert cfg.api_key == DEMO_KEY and cfg.api_key.reveal() == "demo-key"
        assert dict(cfg.params) == {}, alias  # e.g. litellm's api_base would point elsewhere
    assert played.models["primary"].base_url == "http://127.0.0.1:9"
    assert played.models["gpt"].base_url == "http://127.0.0.1:9/v1"
    # the same model twice: told apart, so the primary's outage is not the proxy's
    assert played.models["primary"].model != played.models["proxied"].model
    assert played.models["gpt"].breaker == policy.models["gpt"].breaker  # the user's own settings
    assert played.models["primary"].breaker.failure_threshold == 2


def test_demo_policy_run_reads_well(tmp_path: Path) -> None:
    path = write(tmp_path, MINE.replace("default: [primary, proxied, gpt]", "default: [primary, proxied]"))
    res = cli("demo", "--plain", "--policy", path, "--duration", "4.5", "--outage", "1.5")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.startswith("failover-router demo: route primary → proxied; primary answers HTTP 500 for 1.5 s")
    assert "proxied served  primary ✗ 500 → proxied ✓" in out
    assert "breaker primary: closed → open" in out and "breaker primary: half_open → closed" in out
    assert "breaker proxied" not in out  # the outage is the primary's alone
    assert "note:" not in out  # its breaker closes within the run
    assert "0 failed" in out and "traffic back on primary" in out
    assert "Traceback" not in res.stderr


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """main([...]) in this process, as the console script calls it: (exit status, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_litellm_openai_model_is_played_on_the_fake_server(tmp_path: Path, unset_env: None, clock: Clock) -> None:
    text = MINE.replace("default: [primary, proxied, gpt]", "default: [primary, gpt]")
    policy = load_demo_policy(write(tmp_path, text))
    with FakeServer() as server, Demo(policy, server, outage=5.0, clock=clock) as demo:
        view = View(demo.router, demo.tally, demo.chain, 5.0, 11.0, True, io.StringIO(), clock=clock)
        for _ in range(3):
            demo.request(view)
        assert demo.tally.served == {"gpt": 3}
        assert [t[1:] for t in demo.tally.transitions] == [("primary", "closed", "open")]
        sent = server.received("gpt-4.1")[-1]
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == "Bearer demo-key"
        assert demo.primary_failures() == 2


def test_demo_without_a_default_route_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "version: 1\nmodels:\n  a: {provider: anthropic, model: m}\nroutes:\n  main: [a]\n")
    code, out, err = run_main(capsys, "demo", "--plain", "--policy", path)
    assert (code, out) == (2, "")
    assert err == f"demo: {path}: no route named 'default' (routes: main); the demo plays the default route\n"


def test_demo_with_a_litellm_model_it_cannot_play_is_a_one_line_error(
    tmp_path: Path, unset_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MINE.replace("default: [primary, proxied, gpt]", "default: [primary, gemini]"))
    code, out, err = run_main(capsys, "demo", "--policy", path)
    assert (code, out) == (2, "")
    assert err == (
        f"demo: {path}: cannot play 'gemini' (litellm model gemini/gemini-2.5-pro): the demo plays anthropic "
        "models, and litellm models named openai/..., on its fake server\n"
    )


def test_demo_with_a_policy_that_does_not_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "version: 1\nmodels:\n  a: {provider: anthropic, modle: m}\nroutes:\n  default: [a]\n")
    code, out, err = run_main(capsys, "demo", "--policy", path)
    assert (code, out) == (2, "")
    assert err.startswith(f"demo: cannot load {path}: {path}:3: ")
    assert len(err.splitlines()) == 1  # no placeholder played a part: no hint
    nope = str(tmp_path / "nope.yaml")
    expected = f"demo: cannot load {nope}: {nope}: no such policy file\n"
    assert run_main(capsys, "demo", "--policy", nope) == (2, "", expected)


def test_an_unset_variable_that_must_be_a_number_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, MINE.replace("failure_threshold: 2", "failure_threshold: ${THRESHOLD}"))
    res = cli("demo", "--policy", path)  # a real run: no traceback, exit 2, the error and the hint
    assert res.returncode == 2
    error, hint = res.stderr.splitlines()
    assert error.startswith(f"demo: cannot load {path}: {path}:3: defaults.breaker.failure_threshold: ")
    assert hint == (
        f"hint: THRESHOLD is not set here, so the demo read it as {PLACEHOLDER}; set it to a well-formed value "
        "and run again (the demo never calls anything with it)"
    )


def test_set_variables_and_defaults_are_used(tmp_path: Path, unset_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINE.replace("failure_threshold: 2", "failure_threshold: ${DEMO_TEST_UNSET:-4}")
    monkeypatch.setenv("MY_PROXY_URL", "https://proxy.example")
    policy = load_demo_policy(write(tmp_path, text))
    assert policy.models["primary"].breaker.failure_threshold == 4  # the file's default, not a placeholder
    assert policy.models["proxied"].base_url == "https://proxy.example"
    assert policy.models["primary"].api_key is not None
    assert policy.models["primary"].api_key.reveal() == PLACEHOLDER  # unset here; replaced before any call


def test_recovery_advice_for_a_slow_breaker() -> None:
    demo = BreakerConfig(failure_threshold=3, reset_timeout=2.0, max_reset_timeout=8.0)
    assert 6.0 < recovery_time(demo, outage=5.0, rate=12.0) < 7.0  # the bundled demo: one failed probe
    slow = BreakerConfig(failure_threshold=3, reset_timeout=30.0, max_reset_timeout=300.0)
    assert recovery_time(slow, outage=5.0, rate=12.0) > 30.0


def test_demo_run_with_the_default_breaker_says_how_long_to_run(
    tmp_path: Path, unset_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    text = MINE.replace("reset_timeout: 1s, max_reset_timeout: 4s", "reset_timeout: 30s")
    path = write(tmp_path, text.replace("default: [primary, proxied, gpt]", "default: [primary, proxied]"))
    code, out, err = run_main(capsys, "demo", "--plain", "--policy", path, "--duration", "1.5", "--outage", "1")
    assert code == 0, out + err
    advice = "primary's breaker should close at about 30s (it probes 30s after opening"
    assert out.splitlines()[1].startswith(f"note: {advice}")
    assert "did not return to primary before the demo ended" in out
    assert "try --duration 33" in out.split("Summary")[1]


# ---- arguments ----


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "argument --rate: must be more than 0, got 0"),
        (["--rate", "-3"], "argument --rate: must be more than 0, got -3"),
        (["--duration", "-1"], "argument --duration: must be more than 0, got -1"),
        (["--outage", "0"], "argument --outage: must be more than 0, got 0"),
        (["--outage", "soon"], "argument --outage: expected a number of seconds, got 'soon'"),
        (["--rate", "inf"], "argument --rate: must be a finite number of requests a second, got 'inf'"),
    ],
)
def test_demo_arguments_out_of_range_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: failover-router demo")
    assert err.endswith(f"failover-router demo: error: {message}\n")


def test_demo_help_explains_policy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--policy FILE plays your own policy's default route" in text
    assert "The demo never calls a real endpoint" in text
    assert "litellm models named openai/..." in text
    assert "read as http://demo-placeholder.invalid" in text
    assert "(base URLs and keys replaced: nothing real is called)" in text


# ---- the live view ----


def render_live(view: View, width: int, height: int) -> list[str]:
    """The view as rich's Live draws it on a terminal of this size (Live crops what is taller)."""
    console = Console(width=width, height=height, record=True, force_terminal=True, file=io.StringIO())
    console.print(LiveRender(view))
    return console.export_text().splitlines()


@pytest.fixture
def demo_view(clock: Clock) -> Iterator[tuple[Demo, View]]:
    server = FakeServer().start()
    demo = Demo(load_demo_policy(None), server, outage=5.0, clock=clock)
    view = View(demo.router, demo.tally, demo.chain, 5.0, 11.0, False, io.StringIO(), clock=clock)
    yield demo, view
    demo.router.close()
    server.stop()


def play(demo: Demo, view: View, clock: Clock, seconds: float) -> None:
    for _ in range(round(seconds * 12)):  # 12 requests a second, as the demo sends them
        demo.request(view)
        clock.advance(1 / 12)


def test_live_view_fits_80x24_with_the_breaker_transitions(demo_view: tuple[Demo, View], clock: Clock) -> None:
    demo, view = demo_view
    play(demo, view, clock, 2.7)  # opened, probed during the outage, open again
    lines = render_live(view, 80, 24)
    print("\n".join(lines))
    text = "\n".join(lines)
    assert len(lines) <= 23 and max(map(len, lines)) <= 80
    assert "..." not in text  # nothing cropped by Live
    assert "OUTAGE: opus answers HTTP 500 until 5s" in lines[0]
    assert "[  0.2s] breaker opus: closed → open" in text
    assert "[  2.2s] breaker opus: open → half_open" in text
    assert "[  2.2s] breaker opus: half_open → open" in text
    assert "opus skipped (open) → sonnet ✓" in text
    opus = next(line.split() for line in lines if line.startswith(" opus "))
    assert opus[:3] == ["opus", "open", "3"] and opus[3] == "3.5s"  # the next probe, 4 s after the failed one


def test_live_view_shows_the_whole_outage_at_80x24_and_120x40(demo_view: tuple[Demo, View], clock: Clock) -> None:
    demo, view = demo_view
    play(demo, view, clock, 5.0)
    demo.end_outage(view)
    play(demo, view, clock, 1.7)
    for width, height in ((80, 24), (120, 40)):
        lines = render_live(view, width, height)
        print("\n".join(lines))
        text = "\n".join(lines)
        assert len(lines) < height and max(map(len, lines)) <= width
        events = [line.strip("│ ") for line in lines if "breaker opus:" in line or "outage over:" in line]
        assert [e.split("] ", 1)[1] for e in events] == [
            "breaker opus: closed → open",
            "breaker opus: open → half_open",
            "breaker opus: half_open → open",
            "outage over: opus answers again",
            "breaker opus: open → half_open",
            "breaker opus: half_open → closed",
        ]
        assert "route: █ opus → █ sonnet → █ haiku" in text
        assert "opus ✓ (probe)" in text or height == 24  # 3 requests shown at 24 rows, 8 at 40
        assert len([line for line in lines if "served  " in line]) == (3 if height == 24 else 8)


def test_live_demo_runs_on_a_terminal() -> None:
    out = io.StringIO()
    assert run_demo(outage=0.5, duration=1.2, rate=20, plain=False, out=out) == 0
    screen = out.getvalue()
    assert "breaker transitions and events" in screen and "latest requests" in screen
    assert "Summary" in screen and "0 failed" in screen


def test_the_bundled_demo_still_runs_as_the_readme_shows() -> None:
    res = cli("demo", "--plain", "--duration", "3.5", "--outage", "1.5")
    assert res.returncode == 0, res.stdout + res.stderr
    first = res.stdout.splitlines()[0]
    assert first == "failover-router demo: route opus → sonnet → haiku; opus answers HTTP 500 for 1.5 s, then recovers."
    assert "breaker opus: closed → open" in res.stdout and "traffic back on opus" in res.stdout


# ---- validate ----


def test_validate_prints_every_problem_one_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, """\
        version: 1
        models:
          a: {provider: anthropic, modle: x}
          b: {provider: anthropc, model: y}
        routes: {default: [a, b, c]}
    """)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    problems = getattr(info.value, "problems", (info.value,))  # all of them once PolicyError carries them
    code, out, err = run_main(capsys, "validate", path)
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"invalid policy: {p}" for p in problems]
    assert err.startswith(f"invalid policy: {path}:3: ")
    res = cli("validate", path)  # the same from the command line
    assert (res.returncode, res.stdout, res.stderr) == (1, "", err)


def test_validate_keeps_printing_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "version: 1\nmodels:\n  a: {provider: anthropic, model: m, api_key: sk-literal}\n"
                 "routes: {default: [a]}\n")
    code, out, err = run_main(capsys, "validate", path)
    assert code == 0, err
    assert err.startswith(f"warning: {path}:3: models.a.api_key: API key written in the policy file")
    assert out == f"{path}: ok: 1 models, 1 routes: default (a)\n"


def test_validate_says_when_it_stopped_looking(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = "".join(f"  m{i}: {{provider: anthropic, modle: x}}\n" for i in range(60))
    path = write(tmp_path, f"version: 1\nmodels:\n{models}routes: {{default: [m0]}}\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    problems = getattr(info.value, "problems", (info.value,))
    code, _, err = run_main(capsys, "validate", path)
    assert code == 1
    expected = [f"invalid policy: {p}" for p in problems]
    if getattr(info.value, "truncated", False):
        expected.append(f"note: stopped after {len(problems)} problems; fix these and validate again")
    assert err.splitlines() == expected


def test_demo_names_the_other_problems_of_a_policy_it_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "version: 1\nmodels:\n  a: {provider: anthropic, modle: x}\n"
                 "  b: {provider: anthropc, model: y}\nroutes: {default: [a, b]}\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    more = len(getattr(info.value, "problems", ())) - 1
    also = f" (and {more} more: failover-router validate {path})" if more > 0 else ""
    assert run_main(capsys, "demo", "--policy", path) == (2, "", f"demo: cannot load {path}: {info.value}{also}\n")
