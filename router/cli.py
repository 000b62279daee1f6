"""The `failover-router` command: demo, validate, simulate, status, worker, purge, force-open, force-close, reset."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Sequence

DEMO_DESCRIPTION = """\
Play an outage on a built-in fake server: the first model of the policy's `default` route answers
HTTP 500 for --outage seconds while requests go on at --rate a second; watch its breaker open, the
traffic fail over down the route, and one probe bring it back. No API key, no network.

--policy FILE plays your own policy's default route, with its models, fallback order, breaker,
retry and timeout settings, on the same fake server. The demo never calls a real endpoint: every
model's base_url and api_key are replaced by the fake server's and a demo key, and its params are
dropped. It plays models of provider anthropic, and litellm models named openai/...; any other
model in the default route is an error (exit 2). Environment variables your policy uses but that
are not set here (e.g. ${ANTHROPIC_API_KEY}) read as http://demo-placeholder.invalid, and a
${VAR:-default} keeps its default. The demo exits 0 when every request was served, 1 otherwise.
"""


def _validate(path: str) -> int:
    from .policy import PolicyError, PolicyWarning, load_policy

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PolicyWarning)
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            problems = getattr(exc, "problems", (exc,))  # every problem in the file, the first being exc
            for problem in problems:
                print(f"invalid policy: {problem}", file=sys.stderr)
            if getattr(exc, "truncated", False):  # the loader stopped looking
                print(f"note: stopped after {len(problems)} problems; fix these and validate again", file=sys.stderr)
            return 1
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    routes = ", ".join(f"{name} ({' -> '.join(r.chain)})" for name, r in policy.routes.items())
    print(f"{path}: ok: {len(policy.models)} models, {len(policy.routes)} routes: {routes}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, run_demo

    try:
        return run_demo(
            policy_path=args.policy, outage=args.outage, duration=args.duration, rate=args.rate,
            plain=True if args.plain else None,
        )
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2


SIMULATE_DESCRIPTION = """\
Play TIMELINE (requests over time, and when each model of POLICY fails and how) on the real routing
engine, with in-process fake models and a virtual clock: an hour of traffic takes seconds, and nothing
is called. Prints the requests whose path changed (--requests), every breaker transition, a summary
(requests per model, requests failed, calls the faulty models received, time back to the primary)
and a picture; --json prints the same as one JSON document. Exit 0 once played, 2 for a policy or a
timeline that cannot be read.
"""


def _simulate(args: argparse.Namespace) -> int:
    from .simulate.command import run_simulate

    return run_simulate(args.policy, args.timeline, as_json=args.json, requests=args.requests)


def _more_than_zero(unit: str) -> Callable[[str], float]:
    """An argparse type: a finite number above 0 (argparse reports the error and exits 2)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of {unit}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number of {unit}, got {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def _duration(text: str) -> float:
    """An argparse type: a duration like 500ms, 2s, 1m or a number of seconds, above 0."""
    from .policy.durations import DURATION_FORMS, parse_duration

    seconds = parse_duration(text)
    if seconds is None or not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"expected {DURATION_FORMS}, got {text!r}")
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return seconds


def _long_duration(text: str) -> float:
    """An argparse type: a duration that may be written in days (7d, 12h, 30m), 0 or more."""
    from .policy.durations import LONG_DURATION_FORMS, parse_duration

    seconds = parse_duration(text, days=True)
    if seconds is None or seconds < 0:
        raise argparse.ArgumentTypeError(f"expected {LONG_DURATION_FORMS}, got {text!r}")
    return seconds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _worker_description() -> str:
    from .queue.worker_cli import DESCRIPTION

    return DESCRIPTION


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="failover-router", description="Claude calls that survive Claude's bad days.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="play an outage of the primary model on a built-in fake server (no key, no network)",
        description=DEMO_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--policy", metavar="FILE",
        help="play this policy's default route on the fake server instead of the bundled demo.yaml "
        "(base URLs and keys replaced: nothing real is called)",
    )
    seconds = _more_than_zero("seconds")
    demo.add_argument("--outage", type=seconds, default=5.0, help="seconds the primary answers 500 (default 5)")
    demo.add_argument("--duration", type=seconds, default=11.0, help="seconds the demo runs (default 11)")
    demo.add_argument("--rate", type=_more_than_zero("requests a second"), default=12.0,
                      help="requests per second (default 12)")
    demo.add_argument("--plain", action="store_true", help="event lines instead of the live view")
    validate = sub.add_parser(
        "validate", help="check a policy file; exit 1 with every problem found if it is invalid"
    )
    validate.add_argument("path")
    simulate = sub.add_parser(
        "simulate", help="play a timeline of requests and model faults on the real engine, in virtual time",
        description=SIMULATE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument("policy", metavar="POLICY", help="the policy file (nothing it names is called)")
    simulate.add_argument("timeline", metavar="TIMELINE", help="the timeline file (YAML)")
    simulate.add_argument("--json", action="store_true", help="print one JSON document instead of the report")
    simulate.add_argument(
        "--requests", choices=("changes", "all", "none"), default="changes",
        help="request lines: each request whose path differs from the one before (the default, at most "
        "100), every request, or none",
    )
    status = sub.add_parser("status", help="every model's breaker as the fleet sees it (with state: redis)")
    status.add_argument("policy", metavar="POLICY")
    status.add_argument("--json", action="store_true", help="one JSON document (per refresh with --watch)")
    status.add_argument("--watch", nargs="?", const=1.0, type=_more_than_zero("seconds"), metavar="SECONDS",
                        help="draw each model's breaker over the last minutes, refreshed every SECONDS (default "
                        "1) until Ctrl-C; with --json, one document per refresh")
    status.add_argument("--interval", type=_duration, metavar="DURATION",
                        help="with --watch: the refresh interval, e.g. 500ms, 2s (implies --watch)")
    status.add_argument("--minutes", type=_more_than_zero("minutes"), default=10.0,
                        help="with --watch: how many minutes of history each strip shows (default 10)")
    status.add_argument("--count", type=_positive_int, metavar="N",
                        help="with --watch: stop after N refreshes (default: until Ctrl-C)")
    worker = sub.add_parser("worker", help="drain the policy's durable queue (queued requests) until SIGTERM",
                            description=_worker_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    worker.add_argument("policy", metavar="POLICY")
    worker.add_argument("--concurrency", type=int, metavar="N", help="requests at once (default: queue.concurrency)")
    worker.add_argument("--once", action="store_true", help="exit once nothing is left queued or running")
    worker.add_argument("--grace", type=seconds, default=30.0, help="on SIGTERM, seconds running requests may "
                        "take to finish before they are handed back to the queue (default 30)")
    worker.add_argument("--plain", action="store_true", help="plain progress lines instead of the progress bar")
    worker.add_argument("--batch", action="store_true", help="send what is queued as Message Batches (half price, "
                        "results within hours) instead of one request at a time; also queue: {drain: batch}")
    purge = sub.add_parser("purge", help="delete the queue's finished requests older than queue.keep (default 7d)")
    purge.add_argument("policy", metavar="POLICY")
    purge.add_argument("--older-than", type=_long_duration, metavar="DURATION",
                       help="finished longer ago than this, e.g. 7d, 12h (default: the policy's queue.keep)")
    for name, what in (("force-open", "send the model no traffic, not even a probe, until force-close or reset"),
                       ("force-close", "close the model's breaker now and zero its count"),
                       ("reset", "close the breaker, zero its count and end any retry-after cooldown")):
        action = sub.add_parser(name, help=f"{what} (for the whole fleet with state: redis)")
        action.add_argument("policy", metavar="POLICY")
        action.add_argument("alias", metavar="MODEL", help="a model alias of the policy")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.path)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "status":
        from .status import status

        watch = args.interval if args.interval is not None else args.watch
        return status(args.policy, as_json=args.json, watch=watch, minutes=args.minutes, count=args.count)
    if args.command == "worker":
        from .queue.worker_cli import run_worker

        return run_worker(args.policy, concurrency=args.concurrency, once=args.once, grace=args.grace,
                          plain=True if args.plain else None, batch=args.batch)
    if args.command == "purge":
        from .queue.purge_cli import run_purge

        return run_purge(args.policy, older_than=args.older_than)
    if args.command in ("force-open", "force-close", "reset"):
        from .status import operate

        return operate(args.policy, args.alias, args.command)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
