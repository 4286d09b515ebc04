"""The LLM layer without sockets: a fake transport returning real OpenAI-shaped bodies."""

import asyncio
import json

import pytest

from engine.errors import CacheMiss, LLMError, RunError
from engine.llm.cache import CallCache, cache_key
from engine.llm.client import LLMClient, backoff
from engine.llm.limits import PriorityLimiter
from engine.llm.providers.openai import OpenAIProvider
from engine.llm.types import Request
from engine.errors import Loc
from engine.spec import ModelSpec


def chat_body(text, finish="stop"):
    return {"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}


class FakeTransport:
    """Records what would go over the wire; replies from a script of bodies or errors."""

    def __init__(self, script):
        self.script, self.sent = list(script), []

    async def post_json(self, url, payload, headers, timeout):
        self.sent.append({"url": url, "payload": payload, "headers": headers})
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step

    async def close(self):
        pass


def model(**kw):
    base = dict(name="w", provider="openai", model="gpt-x", loc=Loc("r.yaml", 4, 3),
                base_url="http://server/v1", retries=3)
    base.update(kw)
    return ModelSpec(**base)


def client_with(tmp_path, script, mode="read_write", **kw):
    spec = model(**kw)
    client = LLMClient({"w": spec}, CallCache(tmp_path / "cache", mode))
    transport = FakeTransport(script)
    client._providers["w"] = OpenAIProvider(spec, transport, client.shared)
    return client, transport


REQ = Request(messages=({"role": "user", "content": "hi"},), params={"temperature": 0.5})


async def test_openai_payload_headers_and_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-PLANTED-999")
    client, transport = client_with(tmp_path, [chat_body('{"a": 1}')], api_key_env="MY_KEY")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    response = await client.complete("w", Request(messages=REQ.messages, schema=schema))
    sent = transport.sent[0]
    assert sent["url"] == "http://server/v1/chat/completions"
    assert sent["headers"] == {"Authorization": "Bearer sk-PLANTED-999"}
    assert sent["payload"]["response_format"]["json_schema"]["schema"] == schema
    assert response.text == '{"a": 1}' and response.completion_tokens == 2
    await client.close()
    blob = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert b"sk-PLANTED-999" not in blob


async def test_missing_key_variable_is_a_clear_run_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ABSENT_KEY", raising=False)
    client, _ = client_with(tmp_path, [chat_body("x")], api_key_env="ABSENT_KEY")
    with pytest.raises(RunError) as err:
        await client.complete("w", REQ)
    assert "$ABSENT_KEY" in str(err.value) and "r.yaml:4:3" in str(err.value)


def test_cache_key_covers_what_the_model_sees_and_nothing_else():
    base = cache_key("openai", "m", REQ)
    assert base == cache_key("openai", "m", Request(messages=REQ.messages,
                                                    params={"temperature": 0.5},
                                                    tags={"stage": "other"}, priority=9))
    variants = [cache_key("openai", "m2", REQ), cache_key("mock", "m", REQ),
                cache_key("openai", "m", Request(messages=REQ.messages, params={}, sample=0)),
                cache_key("openai", "m", Request(messages=REQ.messages, params=REQ.params,
                                                 sample=1)),
                cache_key("openai", "m", Request(messages=REQ.messages, params=REQ.params,
                                                 schema={"type": "object"}))]
    assert len({base, *variants}) == 6


async def test_second_call_is_served_from_cache(tmp_path):
    client, transport = client_with(tmp_path, [chat_body("one")])
    first = await client.complete("w", REQ)
    second = await client.complete("w", REQ)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.text == "one" and len(transport.sent) == 1
    assert client.stats.calls == 2 and client.stats.cache_hits == 1
    await client.close()


async def test_cache_stores_json_not_pickle(tmp_path):
    client, _ = client_with(tmp_path, [chat_body("one")])
    await client.complete("w", REQ)
    key = cache_key("openai", "gpt-x", REQ)
    raw = client.cache.store.get(key)
    assert isinstance(raw, str) and json.loads(raw)["response"]["text"] == "one"
    await client.close()


@pytest.mark.parametrize("mode,calls_sent,hit_second", [
    ("read_write", 1, True), ("write_only", 2, False), ("off", 2, False)])
async def test_cache_modes(tmp_path, mode, calls_sent, hit_second):
    client, transport = client_with(tmp_path, [chat_body("x")], mode=mode)
    await client.complete("w", REQ)
    second = await client.complete("w", REQ)
    assert len(transport.sent) == calls_sent and second.cache_hit is hit_second
    await client.close()


async def test_read_only_miss_raises_and_sends_nothing(tmp_path):
    client, transport = client_with(tmp_path, [chat_body("x")], mode="read_only")
    with pytest.raises(CacheMiss) as err:
        await client.complete("w", REQ)
    assert "'w'" in str(err.value) and transport.sent == []
    await client.close()


async def test_retryable_errors_are_retried_then_succeed(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.llm.client.backoff", lambda attempt, after, base=0.5: 0)
    script = [LLMError("HTTP 503", retryable=True, status=503),
              LLMError("HTTP 429", retryable=True, status=429, retry_after=0.0),
              chat_body("ok")]
    client, transport = client_with(tmp_path, script)
    assert (await client.complete("w", REQ)).text == "ok"
    assert len(transport.sent) == 3 and client.stats.retries == 2
    await client.close()


async def test_a_400_is_not_retried_and_fails_the_call(tmp_path):
    client, transport = client_with(tmp_path, [LLMError("HTTP 400: context too long",
                                                        retryable=False, status=400)])
    with pytest.raises(LLMError):
        await client.complete("w", REQ)
    assert len(transport.sent) == 1
    await client.close()


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_wrong_key_model_or_url_stops_the_run_once(tmp_path, status):
    client, transport = client_with(tmp_path, [LLMError(f"HTTP {status}: no", retryable=False,
                                                        status=status, hint="check it")])
    with pytest.raises(RunError) as err:
        await client.complete("w", REQ)
    assert str(err.value).startswith("r.yaml:4:3: model 'w' (openai:gpt-x): HTTP")
    assert err.value.hint == "check it" and len(transport.sent) == 1
    await client.close()


async def test_an_unreachable_server_at_start_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.llm.client.backoff", lambda attempt, after, base=0.5: 0)
    down = LLMError("cannot reach 127.0.0.1:9: refused", retryable=True, kind="unreachable")
    client, transport = client_with(tmp_path, [down], retries=10)
    with pytest.raises(RunError) as err:
        await client.complete("w", REQ)
    assert "is the server running?" in str(err.value) and len(transport.sent) == 3
    await client.close()


async def test_a_server_that_answered_once_is_retried_when_it_drops(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.llm.client.backoff", lambda attempt, after, base=0.5: 0)
    down = LLMError("cannot reach", retryable=True, kind="unreachable")
    client, transport = client_with(tmp_path, [chat_body("one"), down, down, down,
                                               chat_body("two")], retries=5)
    await client.complete("w", REQ)
    second = await client.complete("w", Request(messages=REQ.messages, sample=1))
    assert second.text == "two" and len(transport.sent) == 5
    await client.close()


async def test_retries_give_up_after_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.llm.client.backoff", lambda attempt, after, base=0.5: 0)
    client, transport = client_with(tmp_path, [LLMError("HTTP 500", retryable=True)],
                                    retries=2)
    with pytest.raises(LLMError):
        await client.complete("w", REQ)
    assert len(transport.sent) == 3
    await client.close()


def test_backoff_honours_retry_after_and_caps():
    assert backoff(0, 4.0) >= 4.0
    assert all(0 <= backoff(10, None) <= 30 for _ in range(50))


async def test_priority_limiter_serves_older_items_first():
    limiter = PriorityLimiter(1)
    await limiter.acquire(0)
    order = []

    async def worker(priority):
        await limiter.acquire(priority)
        order.append(priority)
        limiter.release()

    tasks = [asyncio.create_task(worker(p)) for p in (5, 1, 3)]
    await asyncio.sleep(0)
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == [1, 3, 5] and limiter.used == 0


async def test_priority_limiter_caps_concurrency():
    limiter, inside, peak = PriorityLimiter(3), 0, 0

    async def worker(i):
        nonlocal inside, peak
        await limiter.acquire(i)
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.001)
        inside -= 1
        limiter.release()

    await asyncio.gather(*(worker(i) for i in range(20)))
    assert peak == 3 and limiter.used == 0


async def test_local_provider_names_the_install_command_when_packages_are_missing(
        tmp_path, monkeypatch):
    monkeypatch.setattr("engine.llm.providers.local.missing_packages", lambda: ["xllamacpp"])
    spec = model(provider="local", model="smollm2-135m-instruct", base_url=None)
    client = LLMClient({"w": spec}, CallCache(tmp_path / "cache"))
    with pytest.raises(RunError) as err:
        await client.complete("w", REQ)
    assert "xllamacpp" in str(err.value) and "pip install" in str(err.value)
    assert "r.yaml:4:3" in str(err.value)
    await client.close()


@pytest.mark.parametrize("retries", [0, 1])
async def test_unreachable_at_start_is_one_error_whatever_the_retries(tmp_path, monkeypatch,
                                                                      retries):
    monkeypatch.setattr("engine.llm.client.backoff", lambda attempt, after, base=0.5: 0)
    down = LLMError("cannot reach 127.0.0.1:9: refused", retryable=True, kind="unreachable")
    client, transport = client_with(tmp_path, [down], retries=retries)
    with pytest.raises(RunError):
        await client.complete("w", REQ)
    assert len(transport.sent) == retries + 1
    await client.close()
