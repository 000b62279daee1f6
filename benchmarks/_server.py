"""The fake provider server in its own process, driven by one-line commands on stdin.

Run by `benchmarks.common.ServerProcess`; the benchmarks never import it. A separate process keeps the
server's work off the measured process (its CPU, its GIL) and lets it use the other core.

Protocol (one command per line, one reply line each):
    count MODEL          -> requests read for MODEL so far
    fail MODEL [STATUS]  -> every later request for MODEL gets STATUS (500); replies the count at the switch
    ok MODEL             -> every later request for MODEL succeeds; replies the count at the switch
    quit (or EOF)        -> stop
"""

from __future__ import annotations

import sys

from router.testing import FakeServer, Fault


def main() -> None:
    with FakeServer() as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            command, args = words[0], words[1:]
            if command == "quit":
                break
            if command == "fail":
                server.plan(args[0], default=Fault.status(int(args[1]) if len(args) > 1 else 500))
            elif command == "ok":
                server.plan(args[0], default=Fault.ok())
            elif command != "count":
                print(f"error unknown command {command!r}", flush=True)
                continue
            print(server.count(args[0]), flush=True)


if __name__ == "__main__":
    main()
