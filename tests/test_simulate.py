"""`failover-router simulate`: the same timeline played in virtual time and on the fake server in real time,
the timeline file's errors, the fake models' faults, the report, the JSON and the CLI."""

from __future__ import annotations

import io
import json
import textwrap
import time
from pathlib import Path

import pytest

from router import BreakerTransition, Event, Kind, Policy, Router, VirtualClock, parse_policy
from router.cli import main
from router.simulate import Simulation, Timeline, TimelineError, load_timeline, parse_timeline, simulate
from router.simulate.fakes import FakeModel
from router.simulate.report import describe_path, selected, text_lines
from router.simulate.summary import summarize
from router.simulate.timeline import Fault as SimFault
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER

REPO = Path(__file__).resolve().parents[1]

POLICY = """\
    version: 1
    defaults:
      breaker: {{failure_threshold: 2, reset_timeout: 250ms, max_reset_timeout: 250ms}}
      retry: {{attempts: 1}}
      timeout: {{connect: 2s, read: {read}, total: 30s}}
    models:
      primary:  {{provider: anthropic, model: claude-primary,  base_url: '{url}', api_key: '${{KEY_PRIMARY}}'}}
      fallback: {{provider: anthropic, model: claude-fallback, base_url: '{url}', api_key: '${{KEY_FALLBACK}}'}}
      third:    {{provider: anthropic, model: claude-third,    base_url: '{url}', api_key: '${{KEY_THIRD}}'}}
    routes:
      default: [primary, fallback, third]
      fast: [third]
"""


def policy(url: str = "http://unused.invalid", read: str = "5s") -> Policy:
    return parse_policy(textwrap.dedent(POLICY.format(url=url, read=read)), env=KEYS)


def timeline(text: str, source: str = "t.yaml") -> Timeline:
    p = policy()
    return parse_timeline(textwrap.dedent(text), p.models, p.routes, source=source)


def play(text: str, read: str = "5s") -> Simulation:
    return simulate(policy(read=read), timeline(text))


# -- the same timeline in virtual time and on the fake server in real time ------------------------------

# Requests every 100 ms; every fault edge and every breaker retry time falls between two requests (the
# reset timeout is 250 ms and never doubles), so the real run's few milliseconds of latency change nothing.
SAME = """\
    latency: 10ms
    requests:
      times: [0s, 100ms, 200ms, {at: 300ms, stream: true}, 400ms, 500ms, {at: 600ms, stream: true}, 700ms,
              800ms, 900ms, 1s, 1.1s, 1.2s, {at: 1.3s, stream: true}, 1.4s, 1.5s, 1.6s, 1.7s, 1.8s, 1.9s, 2s,
              2.1s, {at: 2.2s, stream: true}, 2.3s, 2.4s]
    models:
      primary:
        faults:
          - {from: 250ms, to: 1050ms, fault: 500}
          - {from: 1550ms, to: 1750ms, fault: {hang: 10ms}}
          - {from: 2150ms, to: 2250ms, fault: {stream_break: {after: 2}}}
      fallback:
        faults:
          - {from: 450ms, to: 650ms, fault: reset}
          - {from: 1750ms, to: 1850ms, fault: 429, retry_after: 250ms}
"""


def server_fault(fault: SimFault | None, latency: float) -> Fault:
    """What the fake server plays for a timeline fault."""
    if fault is None or fault.kind == "ok":
        return Fault.ok(delay=latency)
    if fault.kind == "status":
        assert fault.status is not None
        return Fault.status(fault.status, retry_after=fault.retry_after)
    if fault.kind == "reset":
        return Fault.reset()
    if fault.kind == "hang":
        return Fault.hang(fault.seconds if fault.seconds is not None else 60.0)
    if fault.kind == "slow":
        return Fault.ok(delay=fault.seconds or 0.0)
    return Fault.stream_cut(after=fault.after, delay=latency)


Seen = list[tuple[str, Kind, "int | None", "str | None", bool]] | str  # a request's attempts, or its error


def play_for_real(
    server: FakeServer, tl: Timeline
) -> tuple[list[str | None], list[tuple[str, str, str]], list[Seen]]:
    """The timeline on the fake server over real HTTP and real time: each request at its time, each model's
    fault planned as the request is sent (no fault edge is near a request)."""
    p = policy(server.url)
    transitions: list[tuple[str, str, str]] = []

    def listen(event: Event) -> None:
        if isinstance(event, BreakerTransition):
            transitions.append((event.model, event.old, event.new))

    served: list[str | None] = []
    paths: list[Seen] = []
    planned: dict[str, Fault] = {}
    with Router(p, watch=False) as r:
        r.add_listener(listen)
        start = time.monotonic()
        for req in tl.requests:
            time.sleep(max(0.0, start + req.at - time.monotonic()))
            for alias, config in p.models.items():
                plan = tl.model(alias)
                i = plan.window_at(req.at)
                fault = server_fault(plan.windows[i].fault if i is not None else None, plan.latency)
                if planned.get(alias) != fault:
                    server.plan(config.model, default=fault)
                    planned[alias] = fault
            try:
                if req.stream:
                    with r.stream(messages=USER, max_tokens=32) as s:
                        msg = s.get_final_message()
                else:
                    msg = r.complete(messages=USER, max_tokens=32)
            except Exception as exc:  # a failed request is part of what is compared
                served.append(None)
                paths.append(type(exc).__name__)
                continue
            served.append(msg.routing.model)
            paths.append([(a.model, a.outcome, a.status, a.error_type, a.probe) for a in msg.routing.attempts])
    return served, transitions, paths


def test_virtual_and_real_time_agree(fake_server: FakeServer) -> None:
    tl = timeline(SAME)
    sim = simulate(policy(), tl)
    served, transitions, paths = play_for_real(fake_server, tl)
    assert [r.model for r in sim.requests] == served
    assert [(t.model, t.old, t.new) for t in sim.transitions] == transitions
    assert [[(a.model, a.outcome, a.status, a.error_type, a.probe) for a in r.attempts] for r in sim.requests] == paths
    # and what was played is what the timeline meant: each breaker's story, and a stream resumed mid-answer
    assert served == ["primary"] * 3 + ["fallback"] * 2 + ["third"] * 4 + ["fallback"] * 4 + ["primary"] * 3 + \
        ["fallback"] * 2 + ["third"] * 2 + ["primary"] * 2 + ["fallback"] + ["primary"] * 2
    assert transitions == [
        ("primary", "closed", "open"), ("fallback", "closed", "open"), ("primary", "open", "half_open"),
        ("primary", "half_open", "open"), ("fallback", "open", "half_open"), ("fallback", "half_open", "closed"),
        ("primary", "open", "half_open"), ("primary", "half_open", "open"), ("primary", "open", "half_open"),
        ("primary", "half_open", "closed"), ("primary", "closed", "open"), ("primary", "open", "half_open"),
        ("primary", "half_open", "closed"),
    ]
    resumed = sim.requests[22]
    assert resumed.stream and resumed.model == "fallback"
    assert "stream broke after" in (resumed.attempts[0].detail or "")


# -- the timeline file --------------------------------------------------------------------------------


def error_of(text: str) -> TimelineError:
    with pytest.raises(TimelineError) as caught:
        timeline(text)
    return caught.value


def test_an_unknown_key_is_named_with_its_line_and_a_suggestion() -> None:
    error = error_of("""\
        requests: {rate: 10/s, duration: 1m}
        models:
          primary:
            latency: 1s
            faultz: []
        """)
    assert str(error) == "t.yaml:5: models.primary.faultz: unknown key 'faultz' (did you mean 'faults'?)"


def test_an_unknown_model_alias_lists_the_policys_models() -> None:
    error = error_of("""\
        requests: {rate: 10/s, duration: 1m}
        models:
          primery:
            faults: [{from: 1s, to: 2s, fault: 500}]
        """)
    assert (error.file, error.line, error.key, error.suggestion) == ("t.yaml", 3, "models.primery", "primary")
    assert "unknown model 'primery': the policy's models are primary, fallback, third" in str(error)


def test_a_bad_duration_says_what_a_duration_looks_like() -> None:
    error = error_of("""\
        requests: {rate: 10/s, duration: 1m}
        models:
          primary:
            faults:
              - {from: 1s, to: ten seconds, fault: 500}
        """)
    assert str(error) == ("t.yaml:5: models.primary.faults[0].to: expected a duration (a number of seconds or a "
                          "string like '500ms', '30s', '5m', '1h', '1h30m', '2m30.5s'), got 'ten seconds'")


def test_an_unknown_fault_lists_the_faults() -> None:
    error = error_of("""\
        requests: {rate: 10/s, duration: 1m}
        models:
          primary:
            faults:
              - {from: 1s, to: 2s, fault: rest}
        """)
    assert (error.line, error.key, error.suggestion) == (5, "models.primary.faults[0].fault", "reset")
    assert "unknown fault 'rest': expected a status code" in error.message


@pytest.mark.parametrize(("text", "expected"), [
    ("requests: {rate: 10/s}\n", "t.yaml:1: requests.duration: required key 'duration' is missing"),
    ("requests: {rate: fast, duration: 1m}\n", "t.yaml:1: requests.rate: expected a rate"),
    ("requests: {rate: 10/s, duration: 1m, times: [1s]}\n", "t.yaml:1: requests.rate: give either times or"),
    ("requests: {rate: 10/s, duration: 1m, route: slow}\n", "t.yaml:1: requests.route: unknown route 'slow'"),
    ("requests: {times: [1s, {at: 2s, strem: true}]}\n", "t.yaml:1: requests.times[1].strem: unknown key"),
    ("requests: {rate: 10/s, duration: 1m}\nmodels: {primary: {faults: [{from: 5s, to: 2s, fault: 500}]}}\n",
     "t.yaml:2: models.primary.faults[0].to: 'to' (2s) must be after 'from' (5s)"),
    ("requests: {rate: 10/s, duration: 1m}\nmodels: {primary: {faults: [{from: 1s, to: 9s, fault: 500},\n"
     "  {from: 5s, to: 6s, fault: reset}]}}\n", "t.yaml:3: models.primary.faults: overlaps the window from 1s"),
    ("requests: {rate: 10/s, duration: 1m}\nmodels: {primary: {faults: [{from: 1s, to: 2s, fault: 200}]}}\n",
     "a status code fault must be from 400 to 599, got 200"),
    ("requests: {rate: 10/s, duration: 1m}\nmodels: {primary: {faults: [{from: 1s, to: 2s, fault: reset, "
     "retry_after: 1s}]}}\n", "retry_after goes with a status code fault, not reset"),
    ("requests: {rate: 10/s, duration: 1m}\nmodels: {primary: {faults: [{from: 1s, to: 2s, fault: slow}]}}\n",
     "slow needs its seconds: write {slow: 2s}"),
    ("requests: [1s]\n", "t.yaml:1: requests: expected a mapping, got a list"),
    ("requests: {rate: 10/s, duration: 1m\n", "t.yaml:1: invalid YAML"),
    ("", "t.yaml:1: the timeline is empty"),
])
def test_other_mistakes(text: str, expected: str) -> None:
    assert expected in str(error_of(text))


def test_every_form_of_the_format_reads() -> None:
    tl = timeline("""\
        description: all the forms
        seed: 7
        latency: 50ms
        requests:
          times: [2s, 0s, {at: 1s, stream: true, route: fast, timeout: 3s}]
          stream: false
          timeout: 10s
        models:
          primary:
            latency: 300ms
            faults:
              - {from: 0s, to: 1s, fault: 529}
              - {from: 1s, to: 2s, fault: 429, retry_after: 5s}
              - {from: 2s, to: 3s, fault: reset}
              - {from: 3s, to: 4s, fault: hang}
              - {from: 4s, to: 5s, fault: {hang: 30s}}
              - {from: 5s, to: 6s, fault: {slow: 2s}}
              - {from: 6s, to: 7s, fault: {stream_break: {after: 3}}}
              - {from: 7s, to: 8s, fault: stream_break}
              - {from: 8s, to: 9s, fault: ok}
        """)
    assert (tl.description, tl.seed, tl.latency) == ("all the forms", 7, 0.05)
    assert [(r.at, r.stream, r.route, r.timeout) for r in tl.requests] == [
        (0.0, False, "default", 10.0), (1.0, True, "fast", 3.0), (2.0, False, "default", 10.0)]
    assert [w.fault.label for w in tl.model("primary").windows] == [
        "529", "429 retry_after 5s", "reset", "hang", "hang 30s", "slow 2s", "stream_break after 3",
        "stream_break after 2", "ok"]
    assert tl.model("primary").latency == 0.3 and tl.model("third").latency == 0.05
    from router.simulate.timeline_file import seconds_of

    assert [seconds_of(v) for v in ("1h30m", "2m30.5s", "1s500ms", 90, "30s1m", "1m1m", "m", "")] == [
        5400.0, 150.5, 1.5, 90.0, None, None, None, None]
    rated = timeline("requests: {rate: 600/m, duration: 1m, stream: true}\n")
    assert len(rated.requests) == 600 and all(r.stream for r in rated.requests)
    assert [r.at for r in rated.requests][:3] == [0.0, 0.1, 0.2]


def test_the_bundled_timelines_read(tmp_path: Path) -> None:
    from router.simulate.command import load_simulated_policy

    p, _ = load_simulated_policy(str(REPO / "policies/default.yaml"))
    names = sorted(path.name for path in (REPO / "policies/timelines").glob("*.yaml"))
    assert names == ["handful.yaml", "outage.yaml", "streams.yaml"]
    for name in names:
        load_timeline(REPO / "policies/timelines" / name, p.models, p.routes)


# -- what the fake models do --------------------------------------------------------------------------


def test_a_hang_holds_every_request_until_its_timeout_then_the_breaker_opens() -> None:
    sim = play("""\
        requests: {rate: 10/s, duration: 30s}
        models:
          primary: {faults: [{from: 10s, to: 20s, fault: hang}]}
        """, read="2s")
    window = sim.windows[0]
    # every request of the first 2 s of the hang (they overlap), then one probe after each reset timeout,
    # each hanging for 2 s itself
    assert 20 <= window.calls - window.probes <= 24 and window.probes == 4
    assert sim.peak_in_flight >= 20
    hung = [r for r in sim.requests if 10 <= r.at < 12]
    assert {r.model for r in hung} == {"fallback"}
    assert all(r.attempts[0].error_type == "timeout" and r.attempts[0].duration_s == pytest.approx(2.0)
               for r in hung)
    opened = [t for t in sim.transitions if t.new == "open"]
    assert opened[0].model == "primary" and opened[0].at == pytest.approx(12.1)  # threshold 2


def test_a_hang_ends_with_the_attempts_share_of_timeout() -> None:
    sim = play("""\
        requests: {times: [1s], timeout: 4s}
        models:
          primary: {faults: [{from: 0s, to: 10s, fault: hang}]}
        """)
    (r,) = sim.requests
    first = r.attempts[0]
    assert (r.model, first.error_type, first.duration_s) == ("fallback", "timeout", pytest.approx(2.0))
    assert "no answer within 2s (half of what was left of timeout=" in (first.detail or "")


def test_a_short_hang_closes_the_connection_and_slow_answers_late_or_times_out() -> None:
    sim = play("""\
        requests: {times: [1s, 5s, 10s]}
        models:
          primary:
            faults:
              - {from: 0s, to: 2s, fault: {hang: 300ms}}
              - {from: 4s, to: 6s, fault: {slow: 1s}}
              - {from: 9s, to: 11s, fault: {slow: 3s}}
        """, read="2s")
    first, second, third = ((a.model, a.outcome, a.error_type, round(a.duration_s, 6)) for a in
                            (r.attempts[0] for r in sim.requests))
    assert first == ("primary", Kind.SERVER_FAILURE, "connection_error", 0.3)
    assert second == ("primary", Kind.SUCCESS, None, 1.0)
    assert third == ("primary", Kind.SERVER_FAILURE, "timeout", 2.0)
    assert [r.model for r in sim.requests] == ["fallback", "primary", "fallback"]


def test_rate_limits_cool_down_caller_errors_fail_at_once_and_streams_resume() -> None:
    sim = play("""\
        requests: {times: [1s, 2s, 4s, 6s, {at: 8s, stream: true}]}
        models:
          primary:
            faults:
              - {from: 0s, to: 3s, fault: 429, retry_after: 2.5s}
              - {from: 5s, to: 7s, fault: 400}
              - {from: 7s, to: 9s, fault: {stream_break: {after: 4}}}
        """)
    outcomes = [[(a.model, a.outcome) for a in r.attempts] for r in sim.requests]
    assert outcomes[0] == [("primary", Kind.RATE_LIMITED), ("fallback", Kind.SUCCESS)]
    assert outcomes[1] == [("primary", Kind.COOLING_DOWN), ("fallback", Kind.SUCCESS)]
    assert outcomes[2] == [("primary", Kind.SUCCESS)]  # 4s: cooled down (1s + 2.5s)
    assert (sim.requests[3].model, sim.requests[3].error, outcomes[3]) == (None, "BadRequestError",
                                                                           [("primary", Kind.CALLER)])
    streamed = sim.requests[4]
    assert streamed.model == "fallback" and streamed.attempts[0].outcome is Kind.SERVER_FAILURE
    assert "resumed at char" in (streamed.attempts[1].detail or "")
    assert describe_path(streamed) == "primary ✗ connection_error mid-stream → fallback ✓ resuming the stream"


def test_the_fakes_work_on_the_sync_path_too() -> None:
    """A FakeModel is a whole Provider: Router.complete() and stream() on a VirtualClock, one at a time."""
    clock = VirtualClock()
    tl = timeline("requests: {times: [0s]}\nmodels: {primary: {faults: [{from: 0s, to: 1s, fault: 529}]}}\n")
    r = Router(policy(), clock=clock.clock(), watch=False,
               provider_factory=lambda config: FakeModel(config, tl.model(config.alias), clock.clock()))
    assert r.complete(messages=USER, max_tokens=8).routing.model == "fallback"
    assert clock.now() == pytest.approx(0.2)  # fallback's latency; the 529 took no time
    clock.advance_to(2.0)
    with r.stream(messages=USER, max_tokens=8) as s:
        assert s.get_final_text().startswith("The quick brown fox")
    assert s.get_final_message().routing.model == "primary"


def test_the_same_timeline_plays_the_same_way() -> None:
    text = """\
        seed: 3
        requests: {rate: 20/s, duration: 1m}
        models:
          primary: {faults: [{from: 10s, to: 30s, fault: 503}]}
        """
    runs = [play(text) for _ in range(2)]
    assert runs[0].requests == runs[1].requests and runs[0].transitions == runs[1].transitions


# -- five minutes at 50 a second (the hour: by hand, see the README) -------------------------------------


def test_five_minutes_at_fifty_a_second() -> None:
    sim = play("""\
        latency: 200ms
        requests: {rate: 50/s, duration: 5m}
        models:
          primary: {faults: [{from: 1m, to: 2m, fault: 529}]}
          fallback: {faults: [{from: 3m, to: 3m10s, fault: reset}]}
        """)
    s = summarize(sim)
    assert (s.requests, s.served, s.failed) == (15_000, 15_000, 0)
    assert s.served_by["fallback"] >= 50 * 60 and s.served_by["primary"] > 10_000
    primary, fallback = s.windows
    # of 3000 requests during the outage, the primary got a few before its breaker opened, then only
    # the probes: one each reset timeout (250 ms here, never doubled)
    assert primary.calls - primary.probes < 20 and 200 < primary.probes < 240
    assert fallback.calls < 30
    (recovery,) = s.recoveries
    assert recovery.after is not None and 0 <= recovery.after < 0.5


# -- the report, the JSON and the command -------------------------------------------------------------


def test_changes_mode_shows_each_request_whose_path_changed() -> None:
    sim = play("""\
        requests: {rate: 10/s, duration: 10s}
        models:
          primary: {faults: [{from: 2s, to: 4s, fault: 500}]}
        """)
    shown, qualified = selected(sim.requests, "changes")
    assert shown[0].index == 0 and shown[1].index == 20  # the first request, then the first 500
    assert qualified == len(shown) < 40
    assert len(selected(sim.requests, "all")[0]) == 100 and selected(sim.requests, "none") == ([], 0)
    text = "\n".join(text_lines(sim, summarize(sim), "changes", None))
    assert "primary: closed → open" in text and "served by: primary" in text
    assert "calls the models received during their fault windows:\n    primary 500 2s–4s:" in text


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_the_command_prints_the_report_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "policies/default.yaml", "policies/timelines/handful.yaml", "--requests", "all"]) == 0
    out = capsys.readouterr().out
    assert "opus ✗ 500 → opus ✗ 500 → sonnet ✓" in out
    assert "breaker transitions:\n  [      2.000s] opus: closed → open" in out
    assert "who served the requests" in out and "breakers" in out


def test_json_has_the_summary_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "policies/default.yaml", "policies/timelines/handful.yaml", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    summary = doc["summary"]
    assert (summary["requests"], summary["served"], summary["failed"]) == (11, 11, 0)
    assert summary["served_by"] == {"opus": 1, "sonnet": 9, "haiku": 1}
    assert summary["fault_windows"] == [{"model": "opus", "from": 0.5, "to": 45.0, "fault": "500", "calls": 4,
                                         "probes": 1}]
    assert doc["transitions"][0] == {"at": 2.0, "model": "opus", "old": "closed", "new": "open"}
    assert doc["requests"]["shown"][1]["attempts"][0]["status"] == 500
    assert summary["recoveries"] == [{"route": "default", "model": "opus", "fault_ended": 45.0, "back_at": None,
                                      "after": None}]


def test_a_bad_timeline_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.yaml", "requests: {rate: 10/s, duration: 1m}\nmodels: {gpt: {latency: 1s}}\n")
    assert main(["simulate", "policies/default.yaml", bad]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"simulate: {bad}:2: models.gpt: unknown model 'gpt': the policy's models are opus, "
                            "sonnet, haiku\n")
    assert main(["simulate", "policies/default.yaml", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing.yaml: no such timeline file")
    assert main(["simulate", str(tmp_path / "nope.yaml"), bad]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_picture_fits_its_width() -> None:
    from router.simulate.command import run_simulate

    out = io.StringIO()
    assert run_simulate("policies/default.yaml", "policies/timelines/handful.yaml", out=out, width=60) == 0
    picture = out.getvalue().split("who served the requests")[1]
    assert all(len(line) <= 60 for line in picture.splitlines())
    assert "  opus " in picture and "faults" in picture
