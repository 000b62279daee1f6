"""Secrets under chaos: keys from the environment and one written literally in the policy file, a short soak
(sync, async and streaming, every kind of fault) with DEBUG logging on for every logger (the router's, the
anthropic SDK's, httpx2's...), then bad edits of the policy file. No key, nor a 20-character prefix of one,
may appear in any log record (message, arguments, exception text), any exception's text or traceback,
any repr, routing record or attempt.
"""

from __future__ import annotations

import logging
import random
import traceback
from pathlib import Path

import pytest

import router
from router import PolicyError, Router
from router.testing import FakeServer

from ._reliability import Ledger, check_outcomes
from .test_soak import CHAINS, MODELS, TEXTS, policy, soak

LITERAL = "sk-ant-api03-LITERALkeyinthefile0123456789abcdefghijklmnop"
ENV_KEYS = {
    "KEY_PRIMARY": "sk-ant-api03-ENVPRIMARYsecret0123456789abcdefghijklmnopq",
    "KEY_FALLBACK": "sk-ant-api03-ENVFALLBACKsecret0123456789abcdefghijklmnop",
}
SECRETS = [*ENV_KEYS.values(), LITERAL]
LOGGERS = ["", "router", "anthropic", "anthropic._base_client", "httpx2", "httpx", "httpcore", "asyncio"]


def leaks(texts: list[str]) -> list[str]:
    found = []
    for i, text in enumerate(texts):
        for secret in SECRETS:
            if secret[:20] in text:  # the whole key, or a long prefix of it
                at = text.index(secret[:20])
                found.append(f"text #{i}: ...{text[max(0, at - 80):at]}<KEY {secret[:13]}...>")
    return found


def texts_of_exception(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    link: BaseException | None = exc
    while link is not None:  # the chain as tracebacks and error trackers show it
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
        if link is not None:
            texts += [str(link), repr(link)]
    for name in ("attempts", "partial_text", "partial_message", "reason", "route"):
        if hasattr(exc, name):
            texts.append(repr(getattr(exc, name)))
    return texts


def texts_of_records(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = []
    for rec in records:
        texts += [formatter.format(rec), str(rec.msg), repr(rec.args), repr(rec.__dict__)]
        if rec.exc_info:
            texts.append(formatter.formatException(rec.exc_info))
        if rec.exc_text:
            texts.append(rec.exc_text)
        if rec.stack_info:
            texts.append(rec.stack_info)
    return texts


def test_no_key_leaks_under_chaos_with_debug_logging(
    fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in ENV_KEYS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "policy.yaml"
    text = policy(fake_server.url, keys={"a": "${KEY_PRIMARY}", "b": "${KEY_FALLBACK}", "c": LITERAL})
    path.write_text(text, encoding="utf-8")
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)

    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    with pytest.warns(router.PolicyWarning) as warned:
        r = Router.from_yaml(path, rng=random.Random(seed))
    seen: list[str] = [str(w.message) for w in warned]
    seen += [repr(r), repr(r.policy), str(r.policy), repr(dict(r.policy.models))]

    _, ledger, hung = soak(fake_server, 150, seed, r)  # closes r's clients at the end
    assert not hung, hung
    problems = check_outcomes(ledger, CHAINS, TEXTS)
    assert not problems, problems[:10]
    seen += texts_of_ledger(ledger)
    seen += [repr(r.breakers())]

    # Bad edits of the file: each reload fails with a PolicyError, none of which may quote the key.
    for bad in (
        text.replace(f"api_key: '{LITERAL}'", f"api_key: ['{LITERAL}']"),  # wrong type
        text.replace(f"api_key: '{LITERAL}'", f"api_key: '{LITERAL} '"),  # trailing space
        text.replace(f"api_key: '{LITERAL}'", f"api_kee: '{LITERAL}'"),  # typo in the key name
        text.replace(f"api_key: '{LITERAL}'", f"api_key: '{LITERAL}"),  # unterminated quote
        text.replace(f"api_key: '{LITERAL}'", f"api_key: {LITERAL}: x"),  # YAML syntax error on its line
        text.replace(f"api_key: '{LITERAL}'", f"api_key: '{LITERAL}', api_key: '{LITERAL}'"),  # duplicate
        text.replace("model: claude-c", f"model: claude-c, base_url2: '{LITERAL}'"),
        text.replace("${KEY_PRIMARY}", "${KEY_PRIMARY_MISSING}"),
    ):
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(PolicyError) as info:
            r.reload()
        seen += texts_of_exception(info.value)
    path.write_text(text, encoding="utf-8")
    with pytest.warns(router.PolicyWarning):
        r.reload()
    r.close()

    records = list(caplog.records)
    by_logger = {rec.name.split(".")[0] for rec in records}
    assert {"router", "anthropic"} <= by_logger, f"DEBUG logs were not captured: {by_logger}"
    assert any("Request options" in rec.getMessage() for rec in records)  # the SDK's own debug log ran
    seen += texts_of_records(records)

    # The keys really were used: each model got its own key on the wire.
    for alias, key in {"a": ENV_KEYS["KEY_PRIMARY"], "b": ENV_KEYS["KEY_FALLBACK"], "c": LITERAL}.items():
        headers = [req.headers for req in fake_server.received(MODELS[alias])]
        assert headers and all(key in (h.get("x-api-key", ""), h.get("authorization", "")[7:]) for h in headers)

    found = leaks(seen)
    assert not found, f"{len(found)} leaks (seed {seed}):\n" + "\n".join(found[:10])


def texts_of_ledger(ledger: Ledger) -> list[str]:
    texts: list[str] = []
    for o in ledger.outcomes.values():
        texts.append(repr(o.attempts))
        if o.error is not None:
            texts += texts_of_exception(o.error)
        if o.text is not None:
            texts.append(o.text)
    return texts
