"""`failover-router status | force-open | force-close | reset`: the fleet's breakers, shown and acted on."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from .breaker import BreakerInfo, BreakerStore, MemoryStore
from .clock import SYSTEM
from .policy import Policy, PolicyError, PolicyWarning, load_policy

if TYPE_CHECKING:
    from .status_page import StatusPageWatcher

STATE_STYLE = {"closed": "bold green", "open": "bold red", "half_open": "bold yellow"}


def _store(policy: Policy) -> tuple[BreakerStore, bool]:
    """The policy's breaker store, configured for its models; and whether it is shared (Redis)."""
    redis = policy.state.redis
    store: BreakerStore
    if redis is not None:
        from .redis_store import RedisStore

        store = RedisStore(redis.url.reveal(), prefix=redis.prefix, timeout=max(redis.timeout, 0.5))
    else:
        store = MemoryStore()
    for alias, config in policy.models.items():
        store.configure(alias, config.breaker)
    return store, redis is not None


def _rows(store: BreakerStore, policy: Policy) -> list[dict[str, Any]]:
    now = SYSTEM.now()
    rows = []
    for alias in policy.models:
        info: BreakerInfo = store.info(alias, now)
        row = asdict(info)
        for name in ("opened_at", "retry_at", "cooling_until"):
            row[name] = None if row[name] is None else round(row[name] - now, 3)  # seconds from now
        rows.append({"model": alias, **row})
    return rows


def _shared(store: BreakerStore) -> bool:
    return bool(getattr(store, "shared", False))


def _print_table(rows: list[dict[str, Any]], shared: bool, reachable: bool, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="breakers as the fleet sees them" if shared else "breakers of a fresh process")
    for column in ("model", "state", "failures", "open since", "next probe", "probe in flight", "cooling until"):
        table.add_column(column)
    for row in rows:
        state = row["state"] + (" (forced)" if row["forced"] else "")
        table.add_row(
            row["model"], f"[{STATE_STYLE[row['state']]}]{state}[/]", str(row["failures"]),
            _ago(row["opened_at"]), _ahead(row["retry_at"]), "yes" if row["probe_in_flight"] else "",
            _ahead(row["cooling_until"]),
        )
    console = Console(file=out, highlight=False)
    console.print(table)
    if not shared:
        console.print("note: this policy has no `state:`: breaker state lives in each process, so a fresh "
                      "process shows all closed. Add state: {redis: {url: ...}} to share it.")
    elif not reachable:
        console.print("[red]redis is unreachable: these are this process's own (empty) breakers[/]")


def _ago(seconds: float | None) -> str:
    return "" if seconds is None else f"{-seconds:.1f}s ago"


def _ahead(seconds: float | None) -> str:
    return "" if seconds is None else (f"in {seconds:.1f}s" if seconds > 0 else "now")


def _load(path: str) -> Policy | None:
    try:
        with warnings.catch_warnings():  # what to improve in a policy is `validate`'s to say, not these tools'
            warnings.simplefilter("ignore", PolicyWarning)
            return load_policy(path)
    except PolicyError as exc:
        print(f"invalid policy: {exc}", file=sys.stderr)
        return None


def _page_watcher(policy: Policy, background: bool) -> StatusPageWatcher | None:
    """A reader of the policy's status page that acts on nothing (this process serves no requests)."""
    if policy.status_page is None:
        return None
    from .status_page import observer

    watcher = observer(policy.status_page, policy.models, SYSTEM)
    if background:
        return watcher.start()
    watcher.poll_once()
    return watcher


def _print_page(watcher: StatusPageWatcher | None, out: TextIO) -> None:
    if watcher is None:
        return
    from rich.console import Console

    from .status_page.report import page_lines

    console = Console(file=out, highlight=False)
    for line in page_lines(watcher.last, SYSTEM.now()):
        console.print(line)


def _page_json(watcher: StatusPageWatcher | None) -> dict[str, Any] | None:
    if watcher is None:
        return None
    from .status_page.fetch import shown_url
    from .status_page.report import page_json

    return page_json(watcher.last, shown_url(watcher.config.url), SYSTEM.now())


def status(path: str, *, as_json: bool, watch: float | None, out: TextIO = sys.stdout, minutes: float = 10.0,
           count: int | None = None) -> int:
    """Print every model's breaker and the status page's word (once, or every `watch` seconds until
    interrupted or `count` refreshes: the --watch view draws each breaker over the last `minutes`)."""
    policy = _load(path)
    if policy is None:
        return 2
    store, shared = _store(policy)
    page = _page_watcher(policy, background=watch is not None)
    try:
        if watch is not None and not as_json:
            from .status_watch import Sample, Watch

            def sample() -> Sample:
                now = SYSTEM.now()
                breakers = {alias: store.info(alias, now) for alias in policy.models}
                return Sample(now, breakers, _shared(store) if shared else True)

            view = Watch(sample, list(policy.models), interval=watch, minutes=minutes, shared=shared,
                         page=lambda: page.last if page is not None else None, out=out)
            return view.run(count)
        shown = 0
        while True:
            rows = _rows(store, policy)
            reachable = _shared(store) if shared else True
            if as_json:
                print(json.dumps({"shared": shared, "reachable": reachable, "breakers": rows,
                                  "status_page": _page_json(page)}), file=out, flush=True)
            else:
                _print_table(rows, shared, reachable, out)
                _print_page(page, out)
            shown += 1
            if watch is None:
                return 0 if reachable else 1
            if count is not None and shown >= count:
                return 0
            SYSTEM.sleep(watch)
    except KeyboardInterrupt:
        return 0
    finally:
        if page is not None:
            page.stop()
        close = getattr(store, "close", None)
        if close is not None:
            close()


def operate(path: str, alias: str, action: str, out: TextIO = sys.stdout) -> int:
    """force-open, force-close or reset one model's breaker (for the whole fleet with a shared store)."""
    policy = _load(path)
    if policy is None:
        return 2
    if alias not in policy.models:
        print(f"no model {alias!r} in {path}; models: {', '.join(policy.models)}", file=sys.stderr)
        return 2
    store, shared = _store(policy)
    try:
        acts: dict[str, Callable[[], None]] = {
            "force-open": lambda: store.force_open(alias, SYSTEM.now()),
            "force-close": lambda: store.force_close(alias),
            "reset": lambda: store.reset(alias),
        }
        acts[action]()
        if shared and not _shared(store):
            print(f"redis is unreachable: {action} {alias} was NOT applied to the fleet", file=sys.stderr)
            return 1
        info = store.info(alias, SYSTEM.now())
        where = "for the fleet" if shared else "in this process only (the policy has no `state:`)"
        print(f"{alias}: {action} done {where}; now {info.state}{' (forced)' if info.forced else ''}", file=out)
        return 0
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
