"""Faults of the caller's own process are never counted against a healthy model: event loops that come
and go, fork(), a missing API key, hot reloads under traffic. Real SDK over real HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import textwrap
import threading

import pytest

import router
from router import Kind, Router, load_policy
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER, policy_yaml


def test_sequential_asyncio_run_on_one_router(make_router, fake_server) -> None:
    r = make_router()
    for _ in range(6):  # a script or Celery task calling async code from sync code, one loop per call
        msg = asyncio.run(r.acomplete(messages=USER, max_tokens=32))
        assert msg.routing.model == "primary" and len(msg.routing.attempts) == 1
    assert all(info.failures == 0 and info.state == "closed" for info in r.breakers().values())


def test_module_level_acomplete_across_event_loops(fake_server, tmp_path, monkeypatch) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(fake_server.url))
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROUTER_POLICY", str(path))
    monkeypatch.setattr(router.default, "_default", None)
    try:
        for _ in range(4):
            msg = asyncio.run(router.acomplete(messages=USER, max_tokens=32))
            assert msg.routing.model == "primary" and len(msg.routing.attempts) == 1
    finally:
        default = router.default._default
        if default is not None:
            default.close()


def _tokens_for(prompt: str) -> int:
    # The fake server's input token count: about 4 characters of the JSON prompt per token.
    return max(1, len(json.dumps([None, [{"role": "user", "content": prompt}]], separators=(",", ":"))) // 4)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_reads_its_parents_answers(make_router, fake_server) -> None:
    r = make_router(models=("primary",))
    r.complete(messages=USER, max_tokens=32)  # the parent now holds a pooled keep-alive connection
    parent_prompt, child_prompt = "parent", "the child asks a much longer question " * 8
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its answers must be to its own prompts
        code = 1
        try:
            ok = all(
                r.complete(messages=[{"role": "user", "content": child_prompt}], max_tokens=32).usage.input_tokens
                == _tokens_for(child_prompt)
                for _ in range(20)
            )
            code = 0 if ok else 2
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    try:
        for _ in range(20):
            msg = r.complete(messages=[{"role": "user", "content": parent_prompt}], max_tokens=32)
            assert msg.usage.input_tokens == _tokens_for(parent_prompt)
            assert len(msg.routing.attempts) == 1
    finally:
        result = os.read(read_end, 1)
        os.close(read_end)
        os.waitpid(pid, 0)
    assert result == b"\x00", "the child got an answer that was not its own, or failed"


def test_a_model_without_a_key_is_an_account_outcome_and_fails_over(fake_server, monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    text = textwrap.dedent(f"""
    version: 1
    models:
      keyless:  {{provider: anthropic, model: claude-keyless, base_url: "{fake_server.url}"}}
      fallback: {{provider: anthropic, model: claude-fallback, base_url: "{fake_server.url}",
                 api_key: "${{KEY_FALLBACK}}"}}
    routes:
      default: [keyless, fallback]
    """)
    with pytest.warns(router.PolicyWarning, match="keyless"):
        policy = router.parse_policy(text, env=KEYS)
    with Router(policy) as r:
        msg = r.complete(messages=USER, max_tokens=32)
    assert msg.routing.model == "fallback"
    first = msg.routing.attempts[0]
    assert first.outcome is Kind.ACCOUNT and first.error_type == "missing_credentials"
    assert "ANTHROPIC_API_KEY" in (first.detail or "")
    assert fake_server.count("claude-keyless") == 0


# -- hot reload -----------------------------------------------------------------------------------------


def _write(path, url: str, threshold: int) -> None:
    path.write_text(policy_yaml(url, threshold=threshold))


def test_a_policy_loaded_with_env_reloads_with_it(fake_server, tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, fake_server.url, 3)
    env = dict(KEYS)  # the variables are NOT in os.environ
    with Router(load_policy(path, env=env), watch=False) as r:
        _write(path, fake_server.url, 7)
        r.reload()
        assert r.policy.models["primary"].breaker.failure_threshold == 7
        assert r.complete(messages=USER, max_tokens=32).routing.model == "primary"


def test_an_edit_saved_during_a_reload_is_applied_at_the_next_check(fake_server, tmp_path, monkeypatch) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, fake_server.url, 3)
    r = Router(load_policy(path, env=KEYS))
    real_load = router.reloading.load_policy
    edited = []

    def load_then_edit(source, env=None):
        policy = real_load(source, env=env)
        if not edited:  # the user saves again while the first reload is between reading and applying
            edited.append(True)
            path.write_text(policy_yaml(fake_server.url, threshold=9) + "# a later edit\n")
        return policy

    monkeypatch.setattr(router.reloading, "load_policy", load_then_edit)
    _write(path, fake_server.url, 5)
    r._check_file()
    assert r.policy.models["primary"].breaker.failure_threshold == 5
    r._check_file()
    assert r.policy.models["primary"].breaker.failure_threshold == 9
    r.close()


def test_a_deleted_policy_file_is_reported_once(fake_server, tmp_path, caplog) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, fake_server.url, 3)
    with Router(load_policy(path, env=KEYS)) as r, caplog.at_level(logging.WARNING, logger="router"):
        path.unlink()
        r._check_file()
        r._check_file()
        assert sum("deleted" in rec.getMessage() for rec in caplog.records) == 1
        assert r.complete(messages=USER, max_tokens=32).routing.model == "primary"  # still serving
        _write(path, fake_server.url, 4)
        r._check_file()
        assert r.policy.models["primary"].breaker.failure_threshold == 4


def test_reloads_that_replace_a_provider_never_fail_a_call_in_flight(fake_server: FakeServer, tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(fake_server.url, models=("primary",)))
    fake_server.plan("claude-primary", [], default=Fault.ok(delay=0.002))
    r = Router(load_policy(path, env=KEYS), watch=False)
    failures: list[object] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                msg = r.complete(messages=USER, max_tokens=32)
                if len(msg.routing.attempts) != 1:
                    failures.append(msg.routing.attempts)
            except Exception as exc:
                failures.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(40):  # each edit changes the read timeout: a new provider, the old one retired
            path.write_text(policy_yaml(fake_server.url, models=("primary",), read=f"{5 + i % 2}s"))
            r.reload()
    finally:
        stop.set()
        for t in threads:
            t.join()
        r.close()
    assert failures == []
