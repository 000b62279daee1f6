"""The `failover-router` command: demo, validate."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence


def _validate(path: str) -> int:
    from .policy import PolicyError, PolicyWarning, load_policy

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PolicyWarning)
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            print(f"invalid policy: {exc}", file=sys.stderr)
            return 1
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    routes = ", ".join(f"{name} ({' -> '.join(r.chain)})" for name, r in policy.routes.items())
    print(f"{path}: ok: {len(policy.models)} models, {len(policy.routes)} routes: {routes}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        policy_path=args.policy, outage=args.outage, duration=args.duration, rate=args.rate,
        plain=True if args.plain else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="failover-router", description="Claude calls that survive Claude's bad days.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="play an outage of the primary model on a built-in fake server (no key, no network)"
    )
    demo.add_argument("--policy", help="policy to run (default: the bundled demo.yaml)")
    demo.add_argument("--outage", type=float, default=5.0, help="seconds the primary answers 500 (default 5)")
    demo.add_argument("--duration", type=float, default=11.0, help="seconds the demo runs (default 11)")
    demo.add_argument("--rate", type=float, default=12.0, help="requests per second (default 12)")
    demo.add_argument("--plain", action="store_true", help="event lines instead of the live view")
    validate = sub.add_parser("validate", help="check a policy file; exit 1 with the error if it is invalid")
    validate.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args.path)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
