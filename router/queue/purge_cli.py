"""`failover-router purge POLICY`: delete the finished requests of the policy's queue older than `queue.keep`."""

from __future__ import annotations

import sys
from typing import IO


def run_purge(path: str, *, older_than: float | None = None, out: IO[str] | None = None) -> int:
    """The `purge` command: prints how many finished requests it deleted; 0, or 2 if the policy or its
    queue cannot be opened (or it has no queue: section)."""
    from ..errors import QueueError
    from ..policy import PolicyError
    from ..router import Router

    out = out or sys.stdout
    try:
        router = Router.from_yaml(path, watch=False)
    except (PolicyError, QueueError, OSError) as exc:
        print(f"purge: {exc}", file=sys.stderr)
        return 2
    try:
        if router.queue is None:
            print(f"purge: {path} has no queue: section, so there is nothing to purge (a queue is e.g. queue: "
                  "{sqlite: {path: ./router-queue.db}, keep: 7d})", file=sys.stderr)
            return 2
        try:
            purged = router.purge_queue(older_than)
        except QueueError as exc:
            print(f"purge: {exc}", file=sys.stderr)
            return 2
    finally:
        router.close()
    keep = older_than if older_than is not None else router.policy.queue.keep  # type: ignore[union-attr]
    print(f"purged {purged} finished request{'' if purged == 1 else 's'} older than {_days(keep)}", file=out)
    return 0


def _days(seconds: float) -> str:
    for unit, size in (("d", 86_400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
