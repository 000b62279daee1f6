"""Cold import cost: `import router` vs `import anthropic` vs `import litellm`, each in a fresh process.

Run: python -m benchmarks.imports [--quick] [--no-litellm]
Seconds spent in the import statement (perf_counter around it, in the child), the child's whole run from
spawn to exit, and its peak RSS. Repetitions are interleaved; medians.

Peak RSS is VmHWM from /proc/self/status (in KiB, like ru_maxrss): on Linux, getrusage's ru_maxrss survives
exec(), so a child forked from this benchmark process would report the parent's high-water mark (~90 MiB
with anthropic loaded) even for a bare interpreter. VmHWM belongs to the new process image only.
ru_maxrss is the fallback where /proc is missing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, ServerProcess, Settings, Table, standalone

# One line per step: seconds spent in the step's import, and the peak RSS (KiB) after it.
CHILD = (
    "import resource, time\n"
    "def peak():\n"
    "    hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')]\n"
    "    return hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "for step in {steps!r}:\n"
    "    t0 = time.perf_counter()\n"
    "    exec(step)\n"
    "    print(time.perf_counter() - t0, peak(), flush=True)\n"
)

# child name -> the statements it runs in turn, each timed on its own
CHILDREN: dict[str, list[str]] = {
    "bare": ["pass"],
    "router": ["import router"],
    "anthropic, then router": [
        "import anthropic",
        "import router",
        "router.Router(router.load_policy('policies/default.yaml', env={'ANTHROPIC_API_KEY': 'sk-x'}), watch=False)",
    ],
    "anthropic client": ["import anthropic", "anthropic.Anthropic(api_key='sk-x')"],
    "litellm": ["import litellm"],
}
# table row -> (child, step)
ROWS: dict[str, tuple[str, int]] = {
    "python -c pass (bare interpreter)": ("bare", 0),
    "import anthropic": ("anthropic, then router", 0),
    "import router": ("router", 0),
    "import router, anthropic already imported": ("anthropic, then router", 1),
    "then Router(load_policy('policies/default.yaml')): YAML, schema, 6 SDK clients": ("anthropic, then router", 2),
    "for comparison: import anthropic, then one anthropic.Anthropic() (it builds its own TLS context)":
        ("anthropic client", 1),
    "import litellm": ("litellm", 0),
}

Step = tuple[float, float, float]  # (import seconds, child's whole run seconds, peak RSS MiB after the step)


def child(steps: list[str], env: dict[str, str]) -> list[Step]:
    """Run `steps` in one fresh interpreter: per step (import seconds, process wall seconds, peak RSS MiB)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.format(steps=steps)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    return [(float(seconds), wall, int(kib) / 1024) for seconds, kib in (line.split() for line in out.splitlines())]


def run(settings: Settings, server: ServerProcess | None = None) -> list[Table]:
    children = dict(CHILDREN)
    if not settings.litellm:
        del children["litellm"]
    reps = settings.n(3, 2)
    samples: dict[str, list[list[Step]]] = {name: [] for name in children}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(PYTHONPYCACHEPREFIX=pycache, LITELLM_LOCAL_MODEL_COST_MAP="True")
        for name in ("router", "litellm"):  # untimed: fills the bytecode cache (anthropic's too)
            try:
                if name in children:
                    child(children[name], env)
            except subprocess.CalledProcessError:
                del children[name], samples[name]
        for i in range(reps):
            names = list(children)
            for name in names[i % len(names):] + names[: i % len(names)]:
                if name == "litellm" and i >= 2:
                    continue  # ~3.5 s a run, and no one needs its import time to the millisecond
                samples[name].append(child(children[name], env))

    def median(row: str, field: int) -> float:
        name, step = ROWS[row]
        return statistics.median(run[step][field] for run in samples[name])

    table = Table(f"Cold import, fresh process each (median of {reps} interleaved runs; litellm: {min(reps, 2)})",
                  ["what", "import s", "vs import anthropic ms", "whole process s", "peak RSS (VmHWM) MiB",
                   "RSS over bare interpreter MiB"])
    bare_rss = median("python -c pass (bare interpreter)", 2)
    anthropic_s = median("import anthropic", 0)
    for row, (name, _step) in ROWS.items():
        if name not in samples:
            continue
        seconds, wall, rss = median(row, 0), median(row, 1), median(row, 2)
        is_bare = name == "bare"
        table.rows.append([
            row,
            "-" if is_bare else f"{seconds:.3f}",
            "-" if is_bare or row == "import anthropic"
            else f"{seconds * 1e3:+,.0f}" if row.startswith(("import router, ", "then ", "for comparison"))
            else f"{(seconds - anthropic_s) * 1e3:+,.0f}",
            f"{wall:.3f}",
            f"{rss:.1f}",
            "-" if is_bare else f"{rss - bare_rss:+.1f}",
        ])
    col = "vs import anthropic ms"
    table.summary += [
        ["Cold import over `import anthropic` (ms): router's own share / litellm",
         table.cell("import router, anthropic already imported", col), table.cell("import litellm", col), "< 50 ms"],
        ["Then building a Router from a 3-model policy file (ms): YAML, schema, 6 SDK clients on one TLS context "
         "[one plain anthropic.Anthropic(), for scale]",
         f"{table.cell(next(r for r in ROWS if r.startswith('then ')), col)} "
         f"[{table.cell(next(r for r in ROWS if r.startswith('for comparison')), col)}]", "-", "-"],
        ["Peak RSS after import, over a bare interpreter (MiB)",
         table.cell("import router", table.columns[5]), table.cell("import litellm", table.columns[5]), "-"],
    ]
    table.notes += [
        "`import router` includes importing anthropic (the router re-exports the SDK's Message). Every child "
        "runs with a warm bytecode cache (PYTHONPYCACHEPREFIX in a temporary directory, filled by one untimed "
        "run each), so no contender pays for compiling its sources.",
        "'import anthropic' and 'import router, anthropic already imported' are two steps of one child: it "
        "imports anthropic, then router, each timed on its own, so the second is the router's own share, free "
        "of the run-to-run noise of importing anthropic. 'whole process s' is that child's whole run.",
        "'then Router(...)' is the third step of that child: loading a policy is when PyYAML, the policy schema "
        "and the models' SDK clients (3 models, a sync and an async client each, one TLS context) are loaded and "
        "built, so `import router` alone does not pay for them. Its figure is that step alone; the row under it "
        "is what one plain SDK client costs to build, for scale (most of both is loading the CA store).",
        "litellm with LITELLM_LOCAL_MODEL_COST_MAP=True (no network fetch of its cost map).",
    ]
    if "litellm" not in samples:
        table.notes.append("litellm: not measured (not installed or --no-litellm).")
    return [table]


if __name__ == "__main__":
    standalone(run)
