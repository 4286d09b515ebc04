"""`provider: local` — the embedded default: SmolLM2-135M-Instruct on the real llama.cpp server
(PyPI `xllamacpp`), started on 127.0.0.1 on the first call that misses the cache, spoken to over
the same OpenAI-compatible path, stopped when the run ends. No API key, no network.

```yaml
models:
  deliberator:
    provider: local            # model defaults to smollm2-135m-instruct
    concurrency: 4             # also the server's parallel slots
    ctx_size: 4096             # context tokens per slot (optional)
    threads: 2                 # CPU threads (optional)
    params: {temperature: 0.7, max_tokens: 256}
```
All `local` models of a run share one server; the first one to start it sets its size.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from ...errors import RunError
from ...spec import ModelSpec
from ..local_server import INSTALL, missing_packages
from ..types import Request, Response
from .openai import OpenAIProvider

START_TIMEOUT = 180.0


class LocalServer:
    """The child process running engine.llm.local_server."""

    def __init__(self, spec: ModelSpec, log_dir: Path | None):
        self.spec, self.log_dir = spec, log_dir
        self.process: asyncio.subprocess.Process | None = None
        self.base_url = ""

    async def start(self) -> str:
        missing = missing_packages()
        if missing:
            raise RunError(f"{self.spec.loc}: provider local needs {', '.join(missing)}, "
                           "which is not installed", f"install it: {INSTALL}")
        log = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / "local-server.log").open("ab")
        args = ["--parallel", str(self.spec.concurrency),
                "--ctx-size", str(self.spec.options.get("ctx_size", 4096)),
                "--threads", str(self.spec.options.get("threads", 0))]
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "engine.llm.local_server", *args,
                stdout=asyncio.subprocess.PIPE, stderr=log or asyncio.subprocess.DEVNULL)
        finally:
            if log is not None:
                log.close()  # the child has its own copy
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), START_TIMEOUT)
        except asyncio.TimeoutError:
            line = b""
        if not line.startswith(b"http"):
            await self.stop()
            where = f"; see {self.log_dir / 'local-server.log'}" if self.log_dir else ""
            raise RunError(f"the embedded llama.cpp server did not start{where}",
                           f"check that it runs: {sys.executable} -m engine.llm.local_server")
        self.base_url = line.decode().strip()
        return self.base_url

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()


class LocalProvider(OpenAIProvider):
    kind = "local"
    default_model = "smollm2-135m-instruct"
    schema: dict[str, Any] = {"properties": {
        "ctx_size": {"type": "integer", "minimum": 256},
        "threads": {"type": "integer", "minimum": 0}}}

    def __init__(self, spec: ModelSpec, transport: Any, shared: dict[str, Any]):
        super().__init__(spec, transport, shared)
        shared.setdefault("local_lock", asyncio.Lock())

    async def _server(self) -> LocalServer:
        async with self.shared["local_lock"]:
            server = self.shared.get("local_server")
            if server is None:
                server = LocalServer(self.spec, self.shared.get("log_dir"))
                await server.start()
                self.shared["local_server"] = server
            return server

    def headers(self) -> dict[str, str]:
        return {}

    async def complete(self, request: Request) -> Response:
        server = await self._server()
        self._url = server.base_url
        return await super().complete(request)

    def base_url(self) -> str:
        return self._url

    async def close(self) -> None:
        server = self.shared.pop("local_server", None)
        if server is not None:
            await server.stop()
