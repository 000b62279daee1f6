"""Fault plans for the hostile chaos tests: every fault the fake server knows (the ordinary ones and the
hostile wire: Fault.raw, trickle, drip, echo_headers, sse), each paired with the one outcome the README
says its attempt must have, and the exact text of the answer when it is a valid one.

A `Step` is what one model does with one HTTP request. A request's plan gives each model of the route
exactly as many steps as its `retry.attempts`, so the k-th request the server reads for that model plays
its k-th step; anything more plays `UNPLANNED` (a 500 the checks then report).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from router import Kind
from router.testing import Fault, anthropic_events

JSON = {"content-type": "application/json"}
UNPLANNED = Fault.status(500, message="UNPLANNED: the router sent more requests than it had attempts")

SF, OK, RL, ACC, BIG, CALLER = (Kind.SERVER_FAILURE, Kind.SUCCESS, Kind.RATE_LIMITED, Kind.ACCOUNT,
                                Kind.TOO_LARGE, Kind.CALLER)
COOLDOWN = 300.0  # a 429's retry-after: longer than any run, so only the test's clock jumps end it
WORDS = ("amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron", "iris", "juniper", "kelp",
         "larch", "maple", "nettle", "olive", "poppy", "quartz", "reed", "sage", "thyme", "umber", "violet")


@dataclass(frozen=True)
class Step:
    """One planned response and what the router must make of it."""

    name: str  # the catalogue entry, for reports
    fault: Fault
    expect: Kind  # the outcome its attempt must be recorded with
    text: str | None = None  # a valid answer: exactly the text the caller must get
    cools: bool = False  # a 429 with a retry-after: the model is skipped (cooling_down) afterwards
    no_retry: bool = False  # the documented rules say: move on, do not retry this model
    after_content: bool = False  # a stream that breaks after text reached the caller
    sent_text: str = ""  # after_content: the text this step sends before it breaks

    @property
    def valid(self) -> bool:
        return self.expect is Kind.SUCCESS

    def sends_head(self, stream: bool) -> bool:
        """Does the response head (with its request-id) reach the client at once, whatever follows?"""
        return sends_head(self.fault, stream)

    def describe(self) -> str:
        return f"{self.name}: {fault_repr(self.fault)}"


_DEFAULT = Fault()
FAST = 400_000.0  # bytes per second of a trickle that must not matter


def sends_head(fault: Fault, stream: bool) -> bool:
    if fault.kind in ("html", "reset", "hang"):  # html: an nginx page, no request-id
        return False
    if fault.kind in ("stream_cut", "stream_stall") and not stream:  # plain request: a reset, a hang
        return False
    if fault.kind == "drip":
        return fault.phase != "head"
    if fault.kind == "trickle":
        fast_head = fault.phase == "body" or fault.rate >= FAST
        return fast_head and fault.inner is not None and sends_head(fault.inner, stream)
    return True


def fault_repr(fault: Fault) -> str:
    """A Fault as a short constructor-like text: its kind and the fields that differ from the defaults."""
    parts = []
    for f in dataclasses.fields(fault):
        value = getattr(fault, f.name)
        if f.name == "kind" or value == getattr(_DEFAULT, f.name):
            continue
        if f.name == "inner" and value is not None:
            text = fault_repr(value)
        elif f.name == "events":
            text = "[" + ", ".join(f"{name or '-'}:{data[:60]}" for name, data in value) + "]"
        else:
            text = repr(value)
            text = text if len(text) <= 160 else text[:157] + "..."
        parts.append(f"{f.name}={text}")
    return f"{fault.kind}({', '.join(parts)})"


@dataclass
class Ctx:
    """What a step builder may use: the model's wire name and a fresh answer text."""

    model: str
    text: str
    stream: bool
    rng: random.Random = field(default_factory=random.Random)
    key: str = "sk-ant-api03-NOKEY"  # this model's API key, for servers that quote it back


Builder = Callable[[Ctx], Step]


def answer_text(rng: random.Random, alias: str, index: int) -> str:
    """A distinct, word-split-friendly answer for one model and request."""
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
    return f"{alias}#{index} says {words}."


def message_json(text: str, model: str, msg_id: str = "msg_raw_1") -> str:
    """A complete, valid Messages API reply with `text`, as a server would send it."""
    return json.dumps({
        "id": msg_id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 3},
    })


def envelope(error_type: str, message: str = "nope") -> str:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}})


def error_event(error_type: str) -> tuple[str, dict[str, Any]]:
    return ("error", {"type": "error", "error": {"type": error_type, "message": f"{error_type} in the stream"}})


# -- what every mode shares ------------------------------------------------------------------------

# 2xx replies that are not a valid Message: each a counted server_failure (README, Failure semantics).
GARBAGE_2XX: dict[str, Fault] = {
    "html 200": Fault.raw(200, "<html><body>Captive portal</body></html>", {"content-type": "text/html"}),
    "no content-type": Fault.raw(200, "it works!"),
    "204": Fault.raw(204, ""),
    "empty json": Fault.raw(200, "", JSON),
    "truncated json": Fault.raw(200, '{"id": "msg_1", "type": "mess', JSON),
    "null": Fault.raw(200, "null", JSON),
    "{}": Fault.raw(200, "{}", JSON),
    "[]": Fault.raw(200, "[]", JSON),
    "content null": Fault.raw(200, '{"id":"m","type":"message","role":"assistant","content":null,"model":"x",'
                                   '"usage":{"input_tokens":1,"output_tokens":1}}', JSON),
    "envelope overloaded": Fault.raw(200, envelope("overloaded_error", "Overloaded"), JSON),
    "envelope api_error": Fault.raw(200, envelope("api_error"), JSON),
    "envelope invalid_request (contradicts its 200)": Fault.raw(200, envelope("invalid_request_error"), JSON),
    "body shorter than content-length": Fault.raw(200, '{"id": "msg_1", "ty', JSON, length=4000),
    "text/plain json": Fault.raw(200, "{}", {"content-type": "text/plain"}),
    "invalid UTF-8": Fault.raw(200, b'{"id": "msg_\xff\xfe", "type": "message"}', JSON),
    "gzip header on a plain body": Fault.raw(200, "{}", {**JSON, "content-encoding": "gzip"}),
    "chunked header on an unchunked body": Fault.raw(200, '{"id": "msg_1"}', {**JSON, "transfer-encoding": "chunked"},
                                                     length=None),
    # Almost a Message: one required part missing or wrong (README: type, role, id, usage, typed blocks).
    "message without id": Fault.raw(200, '{"type":"message","role":"assistant","model":"x","content":[{"type":'
                                         '"text","text":"hi"}],"usage":{"input_tokens":1,"output_tokens":1}}', JSON),
    "message without usage": Fault.raw(200, '{"id":"m","type":"message","role":"assistant","model":"x",'
                                            '"content":[{"type":"text","text":"hi"}]}', JSON),
    "message from the user": Fault.raw(200, '{"id":"m","type":"message","role":"user","model":"x","content":'
                                            '[{"type":"text","text":"hi"}],"usage":{"input_tokens":1,'
                                            '"output_tokens":1}}', JSON),
    "content is a string": Fault.raw(200, '{"id":"m","type":"message","role":"assistant","model":"x","content":'
                                          '"hi","usage":{"input_tokens":1,"output_tokens":1}}', JSON),
    "untyped content block": Fault.raw(200, '{"id":"m","type":"message","role":"assistant","model":"x","content":'
                                            '[{"text":"hi"}],"usage":{"input_tokens":1,"output_tokens":1}}', JSON),
    "type is not message": Fault.raw(200, '{"id":"m","type":"completion","role":"assistant","model":"x","content":'
                                          '[{"type":"text","text":"hi"}],"usage":{"input_tokens":1,'
                                          '"output_tokens":1}}', JSON),
}


def _garbage(ctx: Ctx) -> Step:
    name = ctx.rng.choice(sorted(GARBAGE_2XX))
    return Step(f"garbage 2xx ({name})", GARBAGE_2XX[name], SF)


def _server_error(ctx: Ctx) -> Step:
    rng = ctx.rng
    code = rng.choice([500, 502, 503, 504, 529, 408, 409])
    should_retry = rng.choice([None, None, None, False])
    retry_after_ms = rng.choice([None, None, 20.0])
    fault = Fault.status(code, should_retry=should_retry, retry_after_ms=retry_after_ms,
                         delay=rng.choice([0.0, 0.0, 0.01]))
    return Step(f"status {code}", fault, SF, no_retry=should_retry is False)


def _long_retry_after(ctx: Ctx) -> Step:
    return Step("503 retry-after 30 (past the budget: move on)", Fault.status(503, retry_after=30), SF, no_retry=True)


def _raw_error(ctx: Ctx) -> Step:
    code = ctx.rng.choice([500, 502, 503])
    body, headers = ctx.rng.choice([("{{{{", JSON), ("", {}), ("<h1>Bad Gateway</h1>", {"content-type": "text/html"})])
    return Step(f"raw {code} garbage body", Fault.raw(code, body, headers), SF)


def _html(ctx: Ctx) -> Step:
    code = ctx.rng.choice([500, 502, 503, 504])
    return Step(f"html {code}", Fault.html(code), SF)


def _reset(ctx: Ctx) -> Step:
    return Step("reset", Fault.reset(delay=ctx.rng.choice([0.0, 0.01])), SF)


def _hang(ctx: Ctx) -> Step:
    return Step("hang", Fault.hang(ctx.rng.choice([0.6, 1.0])), SF, no_retry=True)


def _drip(ctx: Ctx) -> Step:
    phase = ctx.rng.choice(["head", "body", "ping"] + ([] if ctx.stream else ["sse"]))
    return Step(f"drip {phase}", Fault.drip(0.05, phase=phase, seconds=4.0), SF, no_retry=True)


def _slow_trickle(ctx: Ctx) -> Step:
    phase = ctx.rng.choice(["all", "head", "body"] if not ctx.stream else ["all", "head"])
    return Step(f"slow trickle ({phase})", Fault.trickle(Fault.ok(text=ctx.text), rate=60, phase=phase), SF,
                no_retry=True)


def _trickled_error(ctx: Ctx) -> Step:
    inner = ctx.rng.choice([Fault.status(529), Fault.html(502), Fault.reset()])
    return Step(f"fast trickle of {inner.kind}", Fault.trickle(inner, rate=FAST, chunk=64), SF)


def _echo_server(ctx: Ctx) -> Step:
    code = ctx.rng.choice([500, 503, 529])
    return Step(f"echo_headers {code}", Fault.echo_headers(code), SF)


def _echo_account(ctx: Ctx) -> Step:
    code = ctx.rng.choice([401, 403])
    return Step(f"echo_headers {code}", Fault.echo_headers(code), ACC)


def _echo_429(ctx: Ctx) -> Step:
    return Step("echo_headers 429 (no retry-after)", Fault.echo_headers(429), RL)


def _echo_caller(ctx: Ctx) -> Step:
    code = ctx.rng.choice([400, 404, 413, 422])
    return Step(f"echo_headers {code}", Fault.echo_headers(code), CALLER)


def _rate_limited(ctx: Ctx) -> Step:
    which = ctx.rng.choice(["retry-after", "raw retry-after", "none"])
    if which == "retry-after":
        return Step("429 retry-after", Fault.status(429, retry_after=COOLDOWN), RL, cools=True)
    if which == "raw retry-after":
        return Step("raw 429 retry-after", Fault.raw(429, "", {"retry-after": str(int(COOLDOWN))}), RL, cools=True)
    return Step("429 without retry-after", Fault.status(429), RL)


def _account(ctx: Ctx) -> Step:
    which = ctx.rng.choice(["401", "402", "403", "spend"])
    if which == "spend":
        return Step("429 spend limit", Fault.status(429, error_code="spend_limit_exceeded"), ACC)
    return Step(f"status {which}", Fault.status(int(which)), ACC)


def _too_large(ctx: Ctx) -> Step:
    return Step("400 prompt is too long",
                Fault.status(400, message="prompt is too long: 210000 tokens > 200000 maximum"), BIG)


def _caller(ctx: Ctx) -> Step:
    code = ctx.rng.choice([400, 404, 413, 422])
    return Step(f"caller {code}", Fault.status(code, message="Output blocked by content filtering policy"), CALLER)


def _key_quoted(ctx: Ctx) -> Step:
    """A server that quotes the caller's key back in its error text (not as echo_headers does: in prose)."""
    which = ctx.rng.choice(["500", "401", "400", "envelope"])
    message = f"invalid x-api-key {ctx.key} for this organization"
    if which == "500":
        return Step("500 quoting the key", Fault.status(500, message=message), SF)
    if which == "401":
        return Step("401 quoting the key", Fault.status(401, message=message), ACC)
    if which == "400":
        return Step("400 quoting the key", Fault.status(400, message=message), CALLER)
    return Step("200 envelope quoting the key", Fault.raw(200, envelope("api_error", message), JSON), SF)


def _ok(ctx: Ctx) -> Step:
    rng = ctx.rng
    fault = Fault.ok(text=ctx.text, delay=rng.choice([0.0, 0.0, 0.005]), delta_delay=rng.choice([0.0, 0.0, 0.002]))
    return Step("ok", fault, OK, text=ctx.text)


def _fast_trickle(ctx: Ctx) -> Step:
    phase = ctx.rng.choice(["all", "head", "body"])
    return Step(f"fast trickle ok ({phase})", Fault.trickle(Fault.ok(text=ctx.text), rate=FAST, chunk=256,
                                                            phase=phase), OK, text=ctx.text)


# -- complete() / acomplete() ----------------------------------------------------------------------


def _raw_message(ctx: Ctx) -> Step:
    which = ctx.rng.choice(["exact", "read to EOF", "charset"])
    body = message_json(ctx.text, ctx.model)
    if which == "exact":
        fault = Fault.raw(200, body, JSON)
    elif which == "read to EOF":
        fault = Fault.raw(200, body, JSON, length=None)
    else:
        fault = Fault.raw(200, body, {"content-type": "application/json; charset=utf-8"})
    return Step(f"raw valid message ({which})", fault, OK, text=ctx.text)


def _no_stop_plain(ctx: Ctx) -> Step:  # on a non-streaming request: like ok
    return Step("stream_no_stop (plain request: ok)", Fault.stream_no_stop(text=ctx.text), OK, text=ctx.text)


def _stream_faults_plain(ctx: Ctx) -> Step:
    which = ctx.rng.choice(["error", "cut", "stall"])
    if which == "error":
        return Step("stream_error (plain request: 529)", Fault.stream_error(), SF)
    if which == "cut":
        return Step("stream_cut (plain request: reset)", Fault.stream_cut(), SF)
    return Step("stream_stall (plain request: hang)", Fault.stream_stall(seconds=1.0), SF, no_retry=True)


def _envelope_misc(ctx: Ctx) -> Step:
    which = ctx.rng.choice(["rate", "auth"])
    if which == "rate":
        return Step("200 envelope rate_limit_error", Fault.raw(200, envelope("rate_limit_error"), JSON), RL)
    return Step("200 envelope authentication_error", Fault.raw(200, envelope("authentication_error"), JSON), ACC)


def _sse_to_plain(ctx: Ctx) -> Step:  # an event stream is not a Message
    return Step("sse stream to a plain request", Fault.sse(anthropic_events(ctx.text, model=ctx.model)), SF)


# -- stream() / astream(), faults before any content -------------------------------------------------


def _sse_ok(ctx: Ctx) -> Step:
    rng = ctx.rng
    events: list[tuple[str, Any]] = list(anthropic_events(ctx.text, model=ctx.model, message_id="msg_sse_ok"))
    variant = rng.choice(["plain", "pings", "unknown event", "interval"])
    interval = 0.0
    if variant == "pings":
        events.insert(1, ("ping", {"type": "ping"}))
        events.insert(3, ("ping", {"type": "ping"}))
    elif variant == "unknown event":
        events.insert(1, ("future_event", {"type": "future_event", "x": 1}))
    elif variant == "interval":
        interval = 0.002
    return Step(f"sse valid ({variant})", Fault.sse(events, interval=interval), OK, text=ctx.text)


def _stream_breaks_before_content(ctx: Ctx) -> Step:
    rng = ctx.rng
    which = rng.choice(["error", "error api", "cut", "stall", "no_stop"])
    if which == "error":
        return Step("stream_error after 0", Fault.stream_error(after=0, text=ctx.text), SF)
    if which == "error api":
        return Step("stream_error api_error after 0", Fault.stream_error(after=0, error_type="api_error"), SF)
    if which == "cut":
        return Step("stream_cut after 0", Fault.stream_cut(after=0, text=ctx.text), SF)
    if which == "stall":
        return Step("stream_stall after 0", Fault.stream_stall(after=0, seconds=1.0, text=ctx.text), SF, no_retry=True)
    return Step("stream_no_stop after 0", Fault.stream_no_stop(after=0, text=ctx.text), SF)


def _stream_caller_type_event(ctx: Ctx) -> Step:
    """An `error` event whose type says "your request is wrong", inside a 200 stream, before any content.
    README: before the first token "an `error` event ... simply moves the request to the next model", and
    "a 'your request is wrong' type inside a 2xx contradicts its own status and counts as the server's
    failure"; the brief's caller errors are 4xx only."""
    error_type = ctx.rng.choice(["invalid_request_error", "not_found_error"])
    return Step(f"stream_error {error_type} after 0", Fault.stream_error(after=0, error_type=error_type), SF)


def _stream_rate_limit_event(ctx: Ctx) -> Step:
    return Step("stream_error rate_limit_error after 0", Fault.stream_error(after=0, error_type="rate_limit_error"), RL)


def _sse_broken_before_content(ctx: Ctx) -> Step:
    rng = ctx.rng
    ev = anthropic_events(ctx.text, model=ctx.model, message_id="msg_sse_bad")
    choices: dict[str, tuple[Fault, bool]] = {
        "only message_start, clean end": (Fault.sse(ev[:1]), False),
        "opening then cut": (Fault.sse(ev[:2], end="cut"), False),
        "opening then stall": (Fault.sse(ev[:2], end="stall", stall=1.0), True),
        "malformed JSON message_start": (Fault.sse([("message_start", "{not json")]), False),
        "malformed JSON after message_start": (Fault.sse([ev[0], ("content_block_start", "{nope")]), False),
        "error event overloaded": (Fault.sse([error_event("overloaded_error")]), False),
        "error event after message_start": (Fault.sse([ev[0], error_event("api_error")]), False),
        "delta for a block that never started": (Fault.sse([ev[0], ("content_block_delta", {
            "type": "content_block_delta", "index": 5, "delta": {"type": "text_delta", "text": "x"}})]), False),
        "message_start without a message": (Fault.sse([("message_start", {"type": "message_start"}), *ev[1:]]), False),
        "data null": (Fault.sse([("message_start", "null")]), False),
        "data is a list": (Fault.sse([("message_start", "[1, 2]")]), False),
        "[DONE] only": (Fault.sse([("", "[DONE]")]), False),
        "no message_start at all": (Fault.sse(ev[1:]), False),
        "raw text/event-stream, no message": (Fault.raw(200, 'event: message_start\ndata: {"type":"message_start"}\n\n',
                                                        {"content-type": "text/event-stream"}), False),
    }
    name = rng.choice(sorted(choices))
    fault, stalls = choices[name]
    return Step(f"sse broken before content ({name})", fault, SF, no_retry=stalls)


def _sse_odd_status(ctx: Ctx) -> Step:
    ev = anthropic_events(ctx.text, model=ctx.model)
    which = ctx.rng.choice(["500", "429", "json content-type", "stream error quoting the key"])
    if which == "500":
        return Step("event stream with status 500", Fault.sse(ev, status=500), SF)
    if which == "429":
        return Step("event stream with status 429 and retry-after",
                    Fault.sse(ev, status=429, headers={"retry-after": str(int(COOLDOWN))}), RL, cools=True)
    if which == "json content-type":
        return Step("event stream labelled application/json", Fault.sse(ev, headers=JSON), SF)
    return Step("stream error event quoting the key",
                Fault.stream_error(after=0, message=f"overloaded for key {ctx.key}"), SF)


def _trickled_sse(ctx: Ctx) -> Step:
    ev = anthropic_events(ctx.text, model=ctx.model, message_id="msg_trickled")
    if ctx.rng.random() < 0.5:
        return Step("fast trickle of a valid event stream", Fault.trickle(Fault.sse(ev), rate=FAST, chunk=128), OK,
                    text=ctx.text)
    return Step("fast trickle of a cut event stream", Fault.trickle(Fault.sse(ev[:2], end="cut"), rate=FAST,
                                                                    chunk=128), SF)


def _json_to_stream(ctx: Ctx) -> Step:  # a JSON Message is not an event stream
    return Step("raw valid JSON message to a streaming request",
                Fault.raw(200, message_json(ctx.text, ctx.model), JSON), SF)


# -- stream() / astream(), faults after content (the separate test) ---------------------------------


def _after_content(ctx: Ctx) -> Step:
    rng = ctx.rng
    words = ctx.text.split(" ")
    deltas = [w + " " for w in words[:-1]] + [words[-1]]
    after = rng.randint(1, len(deltas) - 1)  # something sent, something left: never complete
    sent = "".join(deltas[:after])
    which = rng.choice(["cut", "error", "stall", "no_stop", "sse cut", "sse done", "sse error", "drip",
                        "thinking cut"])
    if which == "drip":  # "a " deltas every 50 ms, never the end
        return Step("drip sse (text now and then, never the end)", Fault.drip(0.05, phase="sse", seconds=4.0), SF,
                    after_content=True, sent_text="a ", no_retry=True)
    if which == "thinking cut":  # breaks inside a thinking block, before any text
        ev = anthropic_events(ctx.text, thinking="let me think about it", model=ctx.model)
        return Step("cut inside a thinking block", Fault.sse(ev[:4], end="cut"), SF, after_content=True,
                    no_retry=True)
    if which == "cut":
        fault = Fault.stream_cut(after=after, deltas=deltas)
    elif which == "error":
        fault = Fault.stream_error(after=after, deltas=deltas, error_type=rng.choice(["overloaded_error", "api_error"]))
    elif which == "stall":
        fault = Fault.stream_stall(after=after, deltas=deltas, seconds=1.0)
    elif which == "no_stop":
        fault = Fault.stream_no_stop(after=after, deltas=deltas)
    else:
        ev = anthropic_events(deltas, model=ctx.model, message_id="msg_sse_cut")
        upto = 2 + after  # message_start, content_block_start, then `after` text deltas
        if which == "sse cut":
            fault = Fault.sse(ev[:upto], end="cut")
        elif which == "sse done":
            fault = Fault.sse(ev[:upto])
        else:
            fault = Fault.sse([*ev[:upto], error_event("overloaded_error")])
    return Step(f"after {after} deltas: {which}", fault, SF, after_content=True, sent_text=sent,
                no_retry=True)


# -- the catalogues ---------------------------------------------------------------------------------

Catalogue = list[tuple[float, Builder]]

_SHARED_FAILURES: Catalogue = [
    (10, _server_error), (2, _long_retry_after), (3, _raw_error), (3, _html), (4, _reset), (2, _hang),
    (3, _drip), (2, _slow_trickle), (2, _trickled_error), (10, _garbage), (3, _echo_server),
    (1, _echo_account), (1, _echo_429), (3, _rate_limited), (2, _account), (1, _too_large), (2, _key_quoted),
]
_RARE_CALLER: Catalogue = [(0.6, _caller), (0.6, _echo_caller)]

PLAIN_VALID: Catalogue = [(10, _ok), (4, _raw_message), (3, _fast_trickle), (1, _no_stop_plain)]
PLAIN_FAILURES: Catalogue = [*_SHARED_FAILURES, *_RARE_CALLER, (3, _stream_faults_plain), (2, _envelope_misc),
                             (2, _sse_to_plain)]
STREAM_VALID: Catalogue = [(10, _ok), (5, _sse_ok), (3, _fast_trickle), (1, _trickled_sse)]
STREAM_FAILURES: Catalogue = [*_SHARED_FAILURES, *_RARE_CALLER, (6, _stream_breaks_before_content),
                              (1, _stream_rate_limit_event), (1, _stream_caller_type_event),
                              (9, _sse_broken_before_content), (2, _json_to_stream),
                              (3, _sse_odd_status), (1, _trickled_sse)]
AFTER_CONTENT_FAILURES: Catalogue = [*STREAM_FAILURES, (25, _after_content)]


def pick(catalogue: Catalogue, ctx: Ctx) -> Step:
    weights = [w for w, _ in catalogue]
    build = ctx.rng.choices([b for _, b in catalogue], weights)[0]
    return build(ctx)
