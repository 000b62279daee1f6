"""The public face: module-level complete(), hot reload, secrets, imports, the CLI and the demo."""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import router
from router import AllModelsFailed, PolicyError, Router
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER, policy_yaml

REPO = Path(__file__).resolve().parent.parent


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_module_level_complete_uses_router_policy_env(fake_server: FakeServer, tmp_path, monkeypatch) -> None:
    path = write_policy(tmp_path, policy_yaml(fake_server.url))
    monkeypatch.setenv("ROUTER_POLICY", str(path))
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("router.default._default", None)  # our own module state, not the SDK
    msg = router.complete(messages=USER, max_tokens=16)
    assert msg.routing.model == "primary"
    assert router.default_router() is router.default_router()
    router.default_router().close()


async def test_module_level_acomplete(fake_server: FakeServer, tmp_path, monkeypatch) -> None:
    path = write_policy(tmp_path, policy_yaml(fake_server.url))
    monkeypatch.setenv("ROUTER_POLICY", str(path))
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("router.default._default", None)
    msg = await router.acomplete(messages=USER, max_tokens=16)
    assert msg.routing.route == "default"
    await router.default_router().aclose()


def test_no_policy_anywhere_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ROUTER_POLICY", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("router.default._default", None)
    with pytest.raises(PolicyError, match=r"ROUTER_POLICY.*policies/default.yaml"):
        router.complete(messages=USER, max_tokens=16)


def test_policy_file_is_hot_reloaded(fake_server: FakeServer, tmp_path, monkeypatch) -> None:
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    path = write_policy(tmp_path, policy_yaml(fake_server.url))
    with Router.from_yaml(path) as r:
        assert r.complete(messages=USER, max_tokens=8).routing.model == "primary"
        fake_server.plan("claude-primary", [Fault.status(500)] * 2)
        r.complete(messages=USER, max_tokens=8)
        assert r.breakers()["primary"].failures == 1
        # Swap the order of the chain; the breaker state of an unchanged model survives the reload.
        path.write_text(policy_yaml(fake_server.url).replace("[primary, fallback]", "[fallback, primary]"))
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        r._live._next_check = 0.0  # our own throttle (checked at most once a second): skip the wait
        assert r.complete(messages=USER, max_tokens=8).routing.model == "fallback"
        assert r.breakers()["primary"].failures == 1
        # A broken edit is reported and the running policy stays.
        path.write_text("version: 1\nmodels: {oops\n")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
        r._live._next_check = 0.0
        assert r.complete(messages=USER, max_tokens=8).routing.model == "fallback"
        with pytest.raises(PolicyError, match=r"policy.yaml:2: invalid YAML: a { opened on this line is never closed"):
            r.reload()


def test_secrets_never_leak(fake_server: FakeServer, tmp_path, monkeypatch, caplog) -> None:
    literal = "sk-ant-api03-LITERALinthefile0123456789abcdefghijklmnopq"
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    path = write_policy(
        tmp_path,
        policy_yaml(fake_server.url, models=("primary", "fallback", "third")).replace(
            "'${KEY_THIRD}'", f"'{literal}'"
        ),
    )
    fake_server.plan("claude-primary", default=Fault.status(500))
    fake_server.plan("claude-fallback", default=Fault.status(401))
    fake_server.plan("claude-third", default=Fault.status(529))
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        with pytest.warns(router.PolicyWarning) as warned:
            r = Router.from_yaml(path)
        for _ in range(2):
            with pytest.raises(AllModelsFailed) as exc:
                r.complete(messages=USER, max_tokens=8)
            seen += [str(exc.value), repr(exc.value), repr(exc.value.attempts)]
            seen += [repr(a) for a in exc.value.attempts]
        fake_server.plan("claude-third", default=Fault.ok())
        msg = r.complete(messages=USER, max_tokens=8)
        seen += [repr(msg), repr(msg.routing), msg.model_dump_json()]
        seen += [repr(r), repr(r.policy), str(r.policy), repr(r.breakers())]
        seen += [repr(t.provider) for t in r._current.targets.values()]
        r.close()
    seen += [str(w.message) for w in warned]
    seen += [rec.getMessage() for rec in caplog.records] + [repr(rec.__dict__) for rec in caplog.records]
    assert any("breaker" in s for s in seen)  # the logs really were captured
    blob = "\n".join(seen)
    for secret in [*KEYS.values(), literal]:
        assert secret not in blob
        assert secret[:20] not in blob  # nor a long prefix of it


def test_import_router_does_not_import_litellm_rich_or_yaml() -> None:
    # YAML and the policy schema load with the first policy: `import router` stays cheap (issue 5).
    heavy = ("litellm", "rich", "yaml", "router.policy.loading", "router.policy.schema", "router.policy.yaml_nodes")
    code = f"import sys, router; print(*[m in sys.modules for m in {heavy!r}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] * len(heavy)


def test_clients_are_ready_before_the_first_call_and_share_one_tls_context(make_router) -> None:
    # A model's first call (often a failover, when things are already slow) must not pay for building
    # SDK clients; building a TLS context reads the CA store, so every client shares one.
    from router.providers import anthropic as provider_module

    r = make_router(models=("primary", "fallback", "third"))
    providers = [t.provider for t in r._current.targets.values()]
    assert all(p._sync is not None and p._spare is not None for p in providers)  # sync, and async for a loop
    assert provider_module._tls.cache_info().currsize == 1  # one context, built once, for all six clients
    context = provider_module._tls()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED  # the SDK's default verification, kept


def test_validate_command(tmp_path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "router", "validate", str(REPO / "policies" / "default.yaml")],
        capture_output=True, text=True, env={**os.environ, "ANTHROPIC_API_KEY": "x"},
    )
    assert ok.returncode == 0, ok.stderr
    assert "3 models, 2 routes" in ok.stdout
    bad = write_policy(tmp_path, "version: 1\nmodels:\n  a: {provider: anthropic, modle: x}\nroutes: {default: [a]}\n")
    res = subprocess.run([sys.executable, "-m", "router", "validate", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "policy.yaml:3" in res.stderr and "modle" in res.stderr and "model" in res.stderr


def test_demo_runs_and_shows_the_breaker_open_and_close() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "router", "demo", "--plain", "--outage", "1.5", "--duration", "3.5"],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "breaker opus: closed → open" in out
    assert "breaker opus: half_open → closed" in out
    summary = out[out.index("Summary"):]
    assert "0 failed" in summary
    assert "opened at" in summary and "closed at" in summary
    assert "traffic back on opus" in summary
