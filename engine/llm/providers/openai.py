"""`provider: openai` — any OpenAI-compatible chat completions server (vLLM, llama.cpp, Ollama,
TGI, OpenAI).

```yaml
models:
  writer:
    provider: openai
    model: Qwen/Qwen2.5-7B-Instruct
    base_url: http://localhost:8000/v1
    api_key_env: OPENAI_API_KEY      # the variable's name; the key never goes in YAML
    params: {temperature: 0.7, max_tokens: 512}
```
A stage's `schema` is sent as `response_format` (json_schema), which vLLM and llama.cpp turn
into a grammar.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from ...errors import LLMError, RunError
from ...spec import ModelSpec
from ..types import Request, Response

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider:
    kind = "openai"
    default_model = ""
    schema: dict[str, Any] = {"properties": {}}

    def __init__(self, spec: ModelSpec, transport: Any, shared: dict[str, Any]):
        self.spec, self.transport, self.shared = spec, transport, shared

    @staticmethod
    def check(spec: ModelSpec) -> list[tuple]:
        """Credentials never live in a recipe: a base_url with user:password is refused."""
        parts = urlsplit(spec.base_url or "")
        if parts.username is not None or parts.password is not None:
            return [("base_url holds credentials; recipes are shared files",
                     "remove user:password from the URL and put the key in an environment "
                     "variable named by api_key_env", ("base_url",))]
        return []

    def base_url(self) -> str:
        return (self.spec.base_url or DEFAULT_BASE_URL).rstrip("/")

    def headers(self) -> dict[str, str]:
        env = self.spec.api_key_env
        if not env:
            return {}
        key = os.environ.get(env)
        if not key:
            raise RunError(f"{self.spec.loc}: model {self.spec.name!r} reads its API key from "
                           f"${env}, which is not set", f"export {env}=… before running")
        return {"Authorization": f"Bearer {key}"}

    def payload(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.spec.model, "messages": list(request.messages),
                                **request.params}
        if request.schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": dict(request.schema)}}
        return body

    async def complete(self, request: Request) -> Response:
        body = await self.transport.post_json(
            self.base_url() + "/chat/completions", self.payload(request), self.headers(),
            self.spec.timeout)
        return parse_chat_response(body)

    async def close(self) -> None:
        return None


def parse_chat_response(body: Any) -> Response:
    """An OpenAI chat completion body as a Response; a body of the wrong shape is retryable."""
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
        usage = body.get("usage") or {}
        return Response(text=text, finish_reason=choice.get("finish_reason") or "stop",
                        prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise LLMError(f"reply is not a chat completion: {str(body)[:120]}", kind="malformed",
                       retryable=True) from exc
