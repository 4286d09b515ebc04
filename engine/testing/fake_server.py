"""Fake OpenAI-compatible chat server (aiohttp) for integration tests and benchmarks.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``, and for
tests ``GET /_log`` / ``POST /_reset`` (``?full=1`` also resets counters and RNGs).
Replies come from regex rules, else a minimal instance of the requested json_schema,
else ``"fake reply to: <user text>"``. Injected faults are deterministic for a given
seed and request arrival order (each chat request makes exactly one seeded draw).
CLI: ``python -m engine.testing.fake_server --port 0 --rule 'REGEX=REPLY'`` prints the
base URL as its first stdout line and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import signal
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from aiohttp import web

Reply = str | list[str]


@dataclass
class FakeServerConfig:
    """Behaviour of a :class:`FakeServer`; fields are read live on every request."""

    latency: float = 0.0  # seconds added before every chat response
    jitter: float = 0.0  # uniform +/- seconds around latency (seeded)
    rules: list[tuple[str, Reply]] = field(default_factory=list)  # (regex, reply)
    fail_first: int = 0  # the first N chat requests get ``fail_status``
    fail_status: int = 500
    error_rate: float = 0.0  # probability of HTTP 500
    rate_limit_rate: float = 0.0  # probability of HTTP 429 with Retry-After
    retry_after: float = 1.0  # seconds, sent in the Retry-After header
    reset_rate: float = 0.0  # probability of dropping the connection, no response
    malformed_rate: float = 0.0  # probability of a 200 whose body is not JSON
    seed: int = 0
    api_key: str | None = None  # if set, require ``Authorization: Bearer <key>``
    model: str = "fake-model"  # listed by /v1/models
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port


def schema_instance(schema: Any, root: Any = None) -> Any:
    """Return a minimal JSON value valid against a (simple) JSON schema."""
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return "fake"
    if "$ref" in schema:
        return schema_instance(_resolve_ref(root, schema["$ref"]), root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        names = schema.get("required") or list(props)
        return {n: schema_instance(props.get(n, {}), root) for n in names}
    if kind == "array":
        count = int(schema.get("minItems", 1))
        return [schema_instance(schema.get("items", {}), root) for _ in range(count)]
    return _scalar_instance(kind, schema)


def _scalar_instance(kind: str, schema: dict[str, Any]) -> Any:
    """Minimal value for a scalar JSON-schema type."""
    if kind in ("integer", "number"):
        value = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "fake".ljust(int(schema.get("minLength", 0)), "e")


def _resolve_ref(root: Any, ref: str) -> Any:
    """Resolve a local ``#/...`` JSON pointer against the root schema."""
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _text(content: Any) -> str:
    """Flatten a message content (string or list of parts) to text."""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _error(status: int, message: str, kind: str, code: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    """An OpenAI-shaped JSON error response."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


class FakeServer:
    """Fake chat server; use ``await start()``/``await stop()`` or ``async with``."""

    def __init__(self, config: FakeServerConfig | None = None) -> None:
        self.config = config or FakeServerConfig()
        self.requests: list[dict[str, Any]] = []
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self.reset(full=True)

    def reset(self, full: bool = False) -> None:
        """Clear the request log; ``full`` also resets counters and RNGs."""
        self.requests.clear()
        if full:
            self.chat_count = 0
            self._rule_uses: dict[int, int] = {}
            self._fault_rng = random.Random(self.config.seed)
            self._jitter_rng = random.Random(self.config.seed + 1)

    def make_app(self) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/_log", self._log)
        app.router.add_post("/_reset", self._reset)
        return app

    async def start(self) -> str:
        """Bind and serve; returns the base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving and close all connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """Reject /v1/* requests lacking the configured bearer key."""
        key = self.config.api_key
        if key and request.path.startswith("/v1/"):
            if request.headers.get("Authorization") != f"Bearer {key}":
                if request.path.endswith("/chat/completions"):
                    try:
                        body = await request.json()
                    except ValueError:
                        body = None
                    self.requests.append({"path": request.path, "body": body, "status": 401,
                                          "fault": "auth", "time": time.time()})
                return _error(401, "Incorrect API key provided.",
                              "invalid_request_error", "invalid_api_key")
        return await handler(request)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        """Handle a chat completion: log, delay, maybe fault, else reply."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        entry: dict[str, Any] = {"path": request.path, "body": body,
                                 "status": None, "fault": None, "time": time.time()}
        self.requests.append(entry)
        self.chat_count += 1
        fault = self._pick_fault()
        await self._delay()
        response = self._fault_response(fault, request)
        if response is None:
            response = self._validate(body) or self._completion(body)
        entry["fault"] = fault
        entry["status"] = None if fault == "reset" else response.status
        return response

    def _pick_fault(self) -> str | None:
        """Choose this request's fault with exactly one seeded draw."""
        cfg, draw = self.config, self._fault_rng.random()
        if self.chat_count <= cfg.fail_first:
            return "fail_first"
        for name, rate in (("reset", cfg.reset_rate), ("rate_limit", cfg.rate_limit_rate),
                           ("error", cfg.error_rate), ("malformed", cfg.malformed_rate)):
            if draw < rate:
                return name
            draw -= rate
        return None

    async def _delay(self) -> None:
        """Sleep ``latency`` +/- uniform ``jitter`` seconds."""
        jitter = self.config.jitter
        delay = self.config.latency + (self._jitter_rng.uniform(-jitter, jitter) if jitter else 0)
        if delay > 0:
            await asyncio.sleep(delay)

    def _fault_response(self, fault: str | None, request: web.Request) -> web.Response | None:
        """Build the response for an injected fault (None when there is none)."""
        cfg = self.config
        if fault == "fail_first":
            return _error(cfg.fail_status, "Injected failure (fail_first).", "server_error")
        if fault == "rate_limit":
            return _error(429, "Rate limit reached (injected).", "requests", "rate_limit_exceeded",
                          headers={"Retry-After": f"{cfg.retry_after:g}"})
        if fault == "error":
            return _error(500, "Internal server error (injected).", "server_error")
        if fault == "malformed":
            return web.Response(status=200, text='{"id": "chatcmpl-broken", "choices": [',
                                content_type="application/json")
        if fault == "reset":
            _drop_connection(request)
            return web.Response(status=200)  # write fails; aiohttp treats it as a disconnect
        return None

    def _validate(self, body: Any) -> web.Response | None:
        """400 for bodies that are not a usable chat request."""
        if not isinstance(body, dict):
            return _error(400, "Request body is not valid JSON.", "invalid_request_error")
        messages = body.get("messages")
        if not messages or not isinstance(messages, list) \
                or not all(isinstance(m, dict) for m in messages):
            return _error(400, "'messages' must be a non-empty list of objects.",
                          "invalid_request_error")
        if body.get("stream"):
            return _error(400, "The fake server does not stream.", "invalid_request_error")
        return None

    def _completion(self, body: dict[str, Any]) -> web.Response:
        """A successful OpenAI-shaped chat.completion response."""
        messages = body["messages"]
        content = self._reply(messages, body.get("response_format"))
        prompt_tokens = sum(len(_text(m.get("content")).split()) for m in messages)
        completion_tokens = len(content.split())
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model") or self.config.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}})

    def _reply(self, messages: list[dict[str, Any]], response_format: Any) -> str:
        """First matching rule's reply (lists rotate), else the default reply."""
        text = "\n".join(_text(m.get("content")) for m in messages)
        for index, (pattern, reply) in enumerate(self.config.rules):
            if re.search(pattern, text):
                if isinstance(reply, str):
                    return reply
                uses = self._rule_uses.get(index, 0)
                self._rule_uses[index] = uses + 1
                return reply[uses % len(reply)]
        return _default_reply(messages, response_format)

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "fake"}
        return web.json_response({"object": "list", "data": [model]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _log(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset(full=request.query.get("full", "") not in ("", "0", "false"))
        return web.json_response({"status": "ok"})


def _default_reply(messages: list[dict[str, Any]], response_format: Any) -> str:
    """Schema instance for json_schema/json_object formats, else an echo text."""
    fmt = response_format if isinstance(response_format, dict) else {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema", {})
        return json.dumps(schema_instance(schema))
    users = [m for m in messages if m.get("role") == "user"]
    echo = f"fake reply to: {_text(users[-1].get('content'))[:40] if users else ''}"
    return json.dumps({"reply": echo}) if fmt.get("type") == "json_object" else echo


def _drop_connection(request: web.Request) -> None:
    """Close the socket abruptly (RST where possible) so the client sees a reset."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def run_in_thread(config: FakeServerConfig | None = None
                  ) -> tuple[str, FakeServer, Callable[[], None]]:
    """Serve on a fresh event loop in a daemon thread; ``stop()`` shuts it down (idempotent)."""
    loop = asyncio.new_event_loop()
    server = FakeServer(config)
    thread = threading.Thread(target=loop.run_forever, name="fake-openai", daemon=True)
    thread.start()
    base_url = asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)

    async def shutdown() -> None:
        await server.stop()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:      # handlers still sleeping on latency when the test ended
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop() -> None:
        if not loop.is_closed():
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()

    return base_url, server, stop


def _parse_args(argv: list[str] | None) -> FakeServerConfig:
    """Parse CLI flags (one per FakeServerConfig field, plus --rule) into a config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", action="append", default=[], metavar="REGEX=REPLY",
                        help="split at the first '='; repeat a REGEX to rotate replies")
    for f in fields(FakeServerConfig):
        if f.name != "rules":
            kind = str if f.default is None else type(f.default)
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    args = vars(parser.parse_args(argv))
    rules: dict[str, list[str]] = {}
    for raw in args.pop("rule"):
        pattern, sep, reply = raw.partition("=")
        if not sep:
            parser.error(f"--rule needs REGEX=REPLY, got {raw!r}")
        rules.setdefault(pattern, []).append(reply)
    merged: list[tuple[str, Reply]] = [(k, v[0] if len(v) == 1 else v) for k, v in rules.items()]
    return FakeServerConfig(rules=merged, **args)


async def _serve(config: FakeServerConfig) -> None:
    """Serve until SIGTERM/SIGINT, printing the base URL first."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    server = FakeServer(config)
    print(await server.start(), flush=True)
    try:
        await done.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m engine.testing.fake_server``."""
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
