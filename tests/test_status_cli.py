"""`failover-router status | force-open | force-close | reset` against a real redis-server: the fleet's view."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from router import Router, load_policy
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER


def _policy(tmp_path: Path, redis_url: str, fake_url: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(textwrap.dedent(f"""
    version: 1
    state: {{redis: {{url: "{redis_url}", prefix: cli-test}}}}
    defaults: {{breaker: {{failure_threshold: 2, reset_timeout: 1m}}, retry: {{attempts: 1}}}}
    models:
      primary:  {{provider: anthropic, model: claude-primary, base_url: "{fake_url}", api_key: "${{KEY_PRIMARY}}"}}
      fallback: {{provider: anthropic, model: claude-fallback, base_url: "{fake_url}", api_key: "${{KEY_FALLBACK}}"}}
    routes:
      default: [primary, fallback]
    """))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, **KEYS})


def test_status_shows_what_another_process_did(redis_server, fake_server: FakeServer, tmp_path) -> None:
    path = _policy(tmp_path, redis_server.url, fake_server.url)
    fake_server.plan("claude-primary", [], default=Fault.status(500))
    with Router(load_policy(path, env=KEYS), watch=False) as r:  # this process trips the shared breaker
        for _ in range(2):
            assert r.complete(messages=USER, max_tokens=8).routing.model == "fallback"
        assert r.breakers()["primary"].state == "open"
    shown = _cli("status", str(path), "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["shared"] and view["reachable"]
    rows = {row["model"]: row for row in view["breakers"]}
    assert rows["primary"]["state"] == "open" and rows["primary"]["failures"] == 2
    assert rows["fallback"]["state"] == "closed"
    table = _cli("status", str(path))
    assert "breakers as the fleet sees them" in table.stdout and "open" in table.stdout


def test_operator_commands_act_for_the_fleet(redis_server, fake_server: FakeServer, tmp_path) -> None:
    path = _policy(tmp_path, redis_server.url, fake_server.url)
    with Router(load_policy(path, env=KEYS), watch=False) as r:
        done = _cli("force-open", str(path), "primary")
        assert done.returncode == 0 and "for the fleet" in done.stdout, done.stderr
        assert r.breakers()["primary"].forced  # (a fleet read; pub/sub also tells this process at once)
        assert r.complete(messages=USER, max_tokens=8).routing.model == "fallback"
        assert fake_server.count("claude-primary") == 0
        assert _cli("reset", str(path), "primary").returncode == 0
        assert r.breakers()["primary"].state == "closed"
        assert r.complete(messages=USER, max_tokens=8).routing.model == "primary"
    bad = _cli("force-close", str(path), "primery")
    assert bad.returncode == 2 and "no model 'primery'" in bad.stderr


def test_status_says_when_redis_is_unreachable(redis_server, fake_server: FakeServer, tmp_path) -> None:
    path = _policy(tmp_path, redis_server.url, fake_server.url)
    redis_server.kill()
    shown = _cli("status", str(path), "--json")
    assert shown.returncode == 1 and json.loads(shown.stdout)["reachable"] is False
    refused = _cli("force-open", str(path), "primary")
    assert refused.returncode == 1 and "NOT applied to the fleet" in refused.stderr
