"""The benchmarks stay runnable: their in-memory figures, which reach into the router the most, run small.

Figures are never asserted here (the machines are shared and noisy); only that each produces its rows, that
no request failed, and that the router served the calls being measured.
"""

from __future__ import annotations

import asyncio

from benchmarks import overhead, streaming, throughput
from benchmarks.common import Settings

SMOKE = Settings(litellm=False, smoke=True)  # a few calls each: these tests time nothing


def _numbers(cells: list[str]) -> list[float]:
    """The numeric cells of a row ("1,234", "+12", "-0.49", "98% [80%-101%]" -> 98)."""
    out = []
    for cell in cells:
        head = cell.split(" ")[0].rstrip("%").replace(",", "")
        try:
            out.append(float(head))
        except ValueError:
            continue
    return out


def test_in_memory_overhead_table_has_every_contender() -> None:
    table = overhead.bench_no_network(SMOKE)
    assert table is not None, "the in-memory figure skipped itself: the provider's clients moved"
    names = [row[0] for row in table.rows]
    assert names == [
        "sync: direct anthropic.Anthropic",
        "sync: router.complete",
        "async: direct anthropic.AsyncAnthropic",
        "async: router.acomplete",
        "sync: router's own time in those calls (its time minus the SDK call's)",
        "async: router's own time in those calls (its time minus the SDK call's)",
        "sync: router.complete, provider call stubbed",
        "async: router.acomplete, provider call stubbed",
    ]
    for row in table.rows:
        assert len(_numbers(row[2:4])) == 2, row  # p50 and p99 were measured
    assert len(table.summary) == 1


def test_long_stream_table_measures_both_lengths() -> None:
    table = streaming.bench_long((20, 40), 1)
    assert [(row[0], row[1]) for row in table.rows] == [
        (size, name) for size in ("20", "40") for name in streaming.LONG_NAMES
    ]
    assert all(len(_numbers(row[2:4])) == 2 for row in table.rows)


def test_in_memory_throughput_serves_every_request() -> None:
    rows, counted = asyncio.run(throughput.measure_memory(SMOKE))
    assert [(row[0], row[1]) for row in counted] == [
        (str(c), name) for c, _ in SMOKE.levels() for name in (throughput.DIRECT, throughput.OURS)
    ]
    assert all(_numbers(row[2:3])[0] > 100 for row in counted)  # an SDK call is thousands of function calls
    assert [(row[0], row[1]) for row in rows] == [
        (str(c), name) for c, _ in SMOKE.levels() for name in (throughput.DIRECT, throughput.CONTROL, throughput.OURS)
    ]
    for row in rows:
        failed, total = row[-1].split("/")
        assert failed == "0" and int(total) > 0, row
