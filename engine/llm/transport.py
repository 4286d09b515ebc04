"""HTTP for every provider. The only module that imports aiohttp; its errors become LLMError."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from ..errors import LLMError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
HINTS = {
    400: "the server refused the request: check params, the model name and the context length",
    401: "check the API key in the environment variable named by api_key_env",
    403: "the key has no access to this model",
    404: "check base_url (usually ends in /v1) and the model name",
}


class Transport:
    """A shared aiohttp session, opened on first use inside the running loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                json_serialize=json.dumps)
        return self._session

    async def post_json(self, url: str, payload: dict[str, Any], headers: dict[str, str],
                        timeout: float) -> dict[str, Any]:
        """POST JSON and return the decoded body; raise LLMError saying whether to retry."""
        try:
            async with self._client().post(
                    url, json=payload, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise _status_error(resp.status, resp.headers.get("Retry-After"), body)
        except asyncio.TimeoutError as exc:
            raise LLMError(f"no reply within {timeout:g}s", retryable=True, kind="timeout") from exc
        except aiohttp.ClientConnectorError as exc:
            raise LLMError(f"cannot reach {exc.host}:{exc.port}: {exc.os_error or exc}",
                           retryable=True, kind="unreachable") from exc
        except aiohttp.ClientError as exc:
            raise LLMError(f"connection failed: {exc.__class__.__name__}: {exc}",
                           retryable=True, kind="reset") from exc
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise LLMError(f"malformed reply body: {body[:80]!r}", retryable=True,
                           kind="malformed") from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _status_error(status: int, retry_after: str | None, body: bytes) -> LLMError:
    detail = body[:300].decode("utf-8", "replace")
    try:
        detail = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        pass
    wait = None
    if retry_after:
        try:
            wait = max(float(retry_after), 0.0)
        except ValueError:
            wait = None
    return LLMError(f"HTTP {status}: {detail}", retryable=status in RETRYABLE_STATUS or
                    status >= 500, status=status, retry_after=wait, hint=HINTS.get(status, ""))
