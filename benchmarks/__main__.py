"""Run every benchmark: python -m benchmarks [--quick] [--only NAME ...] [--no-litellm] [--out FILE].

Starts the fake provider server (router.testing) in its own process on 127.0.0.1, runs each figure in
turn, prints markdown tables as they complete, and writes them with a summary and the machine they ran
on to benchmarks/results/latest.md. Figures, never assertions: the machine may be shared and noisy, so
compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from benchmarks import (
    client_cpu,
    fleet,
    imports,
    observability,
    open_breaker,
    outage,
    overhead,
    queue,
    streaming,
    throughput,
)
from benchmarks.common import (
    RESULTS_DIR,
    ROOT,
    Figure,
    ServerProcess,
    Settings,
    Table,
    import_litellm,
    print_tables,
    settle,
)

FIGURES: dict[str, Figure] = {
    "overhead": overhead.run,
    "client_cpu": client_cpu.run,
    "open_breaker": open_breaker.run,
    "outage": outage.run,
    "throughput": throughput.run,
    "streaming": streaming.run,
    "imports": imports.run,
    "fleet": fleet.run,
    "observability": observability.run,
    "queue": queue.run,
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "router"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (router/ has uncommitted changes)" if dirty else head


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine(command: str, started: datetime.datetime, load_before: str, seconds: float) -> str:
    versions = ", ".join(f"{p} {package(p)}" for p in ("failover-router", "anthropic", "httpx2", "litellm", "openai"))
    return "\n".join([
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; whole run {seconds:.0f} s",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()} "
        f"({platform.machine()}); load average {load_before} before, {load()} after",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- Packages: {versions}; commit {git_commit()}",
        f"- Command: `{command}`",
        "- Fake server: router.testing.FakeServer in a separate process on 127.0.0.1 (benchmarks/_server.py)",
        "- Method: contenders interleaved (shuffled order every round); gc.freeze() after the imports and set-up, "
        "so full collections do not rescan litellm's heap while anyone is being timed",
    ])


def summary(tables: Sequence[Table]) -> Table:
    table = Table("Summary", ["what", "failover-router", "litellm.Router", "goal (issue 5)"])
    for t in tables:
        table.rows += t.summary
    table.notes.append("Details, methods and the rows behind each figure are in the sections below.")
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, shorter runs (about a third of the time)")
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), metavar="NAME",
                        help=f"run only these figures: {', '.join(FIGURES)}")
    parser.add_argument("--no-litellm", action="store_true", help="leave the litellm contenders out")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per contender in the per-call figures")
    parser.add_argument("--out", default=str(RESULTS_DIR / "latest.md"),
                        help="markdown file to write (default: benchmarks/results/latest.md; '-' for none)")
    args = parser.parse_args(argv)
    settings = Settings(quick=args.quick, litellm=not args.no_litellm, calls=args.calls)
    command = "python -m benchmarks" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load()
    t0 = time.perf_counter()
    tables: list[Table] = []
    print(f"# failover-router benchmarks ({command})\n", flush=True)
    if settings.litellm:
        import_litellm()  # once, up front, so that no figure's timing includes it
    settle()
    with ServerProcess() as server:
        for name in args.only or FIGURES:
            f0 = time.perf_counter()
            figure_tables = FIGURES[name](settings, server)
            print_tables(figure_tables)
            print(f"<!-- {name}: {time.perf_counter() - f0:.0f} s -->\n", file=sys.stderr, flush=True)
            time.sleep(0.5)  # let background work of the last figure (litellm's threads) drain
            tables += figure_tables
    about = machine(command, started, load_before, time.perf_counter() - t0)
    head = summary(tables)
    print(head.markdown())
    print(about, flush=True)
    if args.out != "-":
        text = "\n".join([
            "# failover-router benchmarks", "",
            "Reproduce: `python -m benchmarks` (from the repository root, in a venv with `pip install -e '.[dev]'`).",
            "", about, "", head.markdown(), *(t.markdown() for t in tables),
        ])
        out = os.path.abspath(args.out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, out)
        print(f"\nwritten to {os.path.relpath(out, os.getcwd())}", flush=True)


if __name__ == "__main__":
    main()
