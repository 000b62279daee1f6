"""The QueueStore contract, as checks every store's tests run (SQLite file, Redis Streams): one function each."""

from __future__ import annotations

import threading
from collections.abc import Callable

from router.queue.results import encode_error
from router.queue.store import BatchRecord, QueueStore
from router.queue.ticket import Ticket

NOW = 1_800_000_000.0

#: `lapse(seconds)`: let a lease end. A store that times leases by its server's clock (Redis's XAUTOCLAIM
#: idle time) needs real time to pass as well as the callers' `now`; for the SQLite file it does nothing.
Lapse = Callable[[float], None]
STATES = ("queued", "running", "batched", "done", "failed", "expired", "canceled")


def ticket(n: int, *, ttl: float = 3600.0, route: str = "default", created: float = NOW) -> Ticket:
    return Ticket(f"tkt_{n:05d}", route, {"max_tokens": 8, "messages": [{"role": "user", "content": f"q{n}"}]},
                  created, created + ttl)


def put_get_roundtrip(store: QueueStore, lapse: Lapse) -> None:
    t = ticket(1)
    store.put([t])
    got = store.get(t.id)
    assert got is not None
    assert (got.id, got.route, dict(got.params)) == (t.id, "default", dict(t.params))
    assert (got.state, got.attempts, got.worker, got.result, got.error) == ("queued", 0, None, None, None)
    assert (got.created_at, got.expires_at) == (t.created_at, t.expires_at)
    assert store.get("tkt_none") is None
    store.put([ticket(1, route="other")])  # an id already stored is left as it is
    again = store.get(t.id)
    assert again is not None and again.route == "default"
    assert store.counts() == {**dict.fromkeys(STATES, 0), "queued": 1}


def claim_in_order_and_exclusively(store: QueueStore, lapse: Lapse) -> None:
    store.put([ticket(n) for n in range(5)])
    first = store.claim("w1", 3, 10.0, NOW)
    assert [t.id for t in first] == ["tkt_00000", "tkt_00001", "tkt_00002"]
    assert all(t.state == "running" and t.worker == "w1" and t.lease_until == NOW + 10.0 for t in first)
    second = store.claim("w2", 10, 10.0, NOW + 1)
    assert [t.id for t in second] == ["tkt_00003", "tkt_00004"]
    assert store.claim("w3", 10, 10.0, NOW + 2) == []
    assert store.counts()["running"] == 5


def claim_only_the_routes_asked_for(store: QueueStore, lapse: Lapse) -> None:
    store.put([ticket(0, route="down"), ticket(1, route="up"), ticket(2, route="down"), ticket(3, route="up"),
               ticket(4, route="other")])
    assert [t.id for t in store.claim("w", 10, 10.0, NOW, routes=["up"])] == ["tkt_00001", "tkt_00003"]
    assert store.claim("w", 10, 10.0, NOW, routes=["up"]) == []
    assert store.claim("w", 10, 10.0, NOW, routes=[]) == []
    assert {t.id for t in store.claim("w", 10, 10.0, NOW, routes=["other", "down"])} == {
        "tkt_00000", "tkt_00002", "tkt_00004"}


def lease_takeover_blocks_the_old_worker(store: QueueStore, lapse: Lapse) -> None:
    store.put([ticket(1), ticket(2)])
    (a, b) = store.claim("w1", 2, 0.2, NOW)
    assert store.renew(a.id, "w1", 5.0, NOW + 0.1)  # a's lease now ends at NOW + 5.1
    lapse(0.3)
    taken = store.claim("w2", 10, 0.2, NOW + 2.0)  # b's lease ended at NOW + 0.2: w2 takes it over
    assert [t.id for t in taken] == [b.id] and taken[0].worker == "w2"
    assert not store.renew(b.id, "w1", 5.0, NOW + 2.1)
    assert not store.finish(b.id, "w1", {"message": "late"}, NOW + 2.2)
    assert not store.fail(b.id, "w1", {"type": "X"}, NOW + 2.2, final=True)
    assert not store.release(b.id, "w1")
    assert store.finish(b.id, "w2", {"message": "w2's"}, NOW + 2.3)
    assert not store.finish(b.id, "w2", {"message": "twice"}, NOW + 2.4)  # final: exactly one result
    done = store.get(b.id)
    assert done is not None and done.state == "done" and done.result == {"message": "w2's"}
    assert done.worker == "w2" and done.lease_until is None
    assert done.finished_at == NOW + 2.3
    assert store.finish(a.id, "w1", {"message": "a"}, NOW + 3.0)


def fail_requeues_then_ends(store: QueueStore, lapse: Lapse) -> None:
    store.put([ticket(1)])
    (t,) = store.claim("w", 1, 10.0, NOW)
    error = encode_error(ValueError("every model down"))
    assert store.fail(t.id, "w", error, NOW + 1, final=False)
    again = store.get(t.id)
    assert again is not None and (again.state, again.attempts, again.worker) == ("queued", 1, None)
    assert again.error is not None and again.error["type"] == "ValueError"
    (t,) = store.claim("w", 1, 10.0, NOW + 2)
    assert t.attempts == 1
    assert store.fail(t.id, "w", error, NOW + 3, final=True)
    end = store.get(t.id)
    assert end is not None and (end.state, end.attempts, end.finished_at) == ("failed", 2, NOW + 3)
    assert store.claim("w", 1, 10.0, NOW + 4) == []


def release_gives_back_unchanged(store: QueueStore, lapse: Lapse) -> None:
    store.put([ticket(1)])
    (t,) = store.claim("w", 1, 10.0, NOW)
    assert store.release(t.id, "w")
    back = store.get(t.id)
    assert back is not None and (back.state, back.attempts, back.worker) == ("queued", 0, None)
    assert [x.id for x in store.claim("v", 1, 10.0, NOW)] == [t.id]


def expiry(store: QueueStore, lapse: Lapse) -> None:
    store.put([ticket(1, ttl=5.0), ticket(2, ttl=50.0), ticket(3, ttl=5.0), ticket(4, ttl=5.0)])
    (one,) = store.claim("w", 1, 0.2, NOW)
    assert one.id == "tkt_00001"
    lapse(0.3)
    # tkt_00001 is running with a lease that ended; 3 and 4 are queued; all past their expiry at NOW + 10
    claimed = store.claim("w", 10, 0.2, NOW + 10.0)
    assert [t.id for t in claimed] == ["tkt_00002"]
    for n in (1, 3, 4):
        t = store.get(f"tkt_{n:05d}")
        assert t is not None and t.state == "expired" and t.final and t.error is not None
        assert t.error["type"] == "Expired"
    # a round that ends after the ticket's expiry ends it as expired, keeping the round's attempts
    error = {"type": "AllModelsFailed", "message": "down", "status": None, "attempts": [{"model": "m"}]}
    assert store.fail("tkt_00002", "w", error, NOW + 60.0, final=False)
    t = store.get("tkt_00002")
    assert t is not None and t.state == "expired" and t.error is not None
    assert t.error["type"] == "Expired" and t.error["attempts"] == [{"model": "m"}]
    assert store.counts()["expired"] == 4


def expire_sweeps(store: QueueStore, lapse: Lapse) -> None:
    store.put([ticket(1, ttl=5.0), ticket(2, ttl=5.0), ticket(3, ttl=500.0)])
    (live,) = store.claim("w", 1, 100.0, NOW)  # tkt_00001, its lease runs past its expiry
    assert store.expire(NOW + 10.0) == 1  # tkt_00002; tkt_00001 is being served: left to finish
    assert store.finish(live.id, "w", {"message": "m"}, NOW + 11.0)
    assert store.counts() == {**dict.fromkeys(STATES, 0), "done": 1, "expired": 1, "queued": 1}


def cancel_and_batches(store: QueueStore, lapse: Lapse) -> None:
    store.put([ticket(n) for n in range(4)])
    ids = ("tkt_00000", "tkt_00001", "tkt_00002")
    store.save_batch(BatchRecord("msgbatch_1", "default", "primary", ids, NOW))
    assert [b.id for b in store.open_batches()] == ["msgbatch_1"]
    assert store.open_batches()[0].ticket_ids == ids
    batched = store.get("tkt_00000")
    assert batched is not None and batched.state == "batched" and batched.batch_id == "msgbatch_1"
    assert [t.id for t in store.claim("w", 10, 10.0, NOW)] == ["tkt_00003"]  # batched tickets are not claimed
    assert store.finish("tkt_00000", None, {"message": "from the batch"}, NOW + 1)
    assert store.requeue("tkt_00001", NOW + 1)
    assert store.cancel("tkt_00002", NOW + 1)
    assert not store.cancel("tkt_00000", NOW + 1) and not store.requeue("tkt_00000", NOW + 1)
    store.end_batch("msgbatch_1")
    assert store.open_batches() == []
    canceled = store.get("tkt_00002")
    assert canceled is not None and canceled.state == "canceled"
    assert [t.id for t in store.claim("w", 10, 10.0, NOW + 2)] == ["tkt_00001"]


def threads_never_share_a_ticket(store: QueueStore, lapse: Lapse, n: int = 600, threads: int = 8) -> None:
    store.put([ticket(i) for i in range(n)])
    got: list[list[str]] = [[] for _ in range(threads)]

    def drain(k: int) -> None:
        while True:
            batch = store.claim(f"w{k}", 7, 30.0, NOW)
            if not batch:
                return
            for t in batch:
                assert store.finish(t.id, f"w{k}", {"by": k}, NOW)
                got[k].append(t.id)

    workers = [threading.Thread(target=drain, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    every = [i for g in got for i in g]
    assert len(every) == n and len(set(every)) == n
    assert store.counts()["done"] == n


CONTRACT: tuple[Callable[[QueueStore, Lapse], None], ...] = (
    put_get_roundtrip, claim_in_order_and_exclusively, claim_only_the_routes_asked_for,
    lease_takeover_blocks_the_old_worker,
    fail_requeues_then_ends, release_gives_back_unchanged, expiry, expire_sweeps, cancel_and_batches,
    threads_never_share_a_ticket,
)
