"""The production server started as a separate process for tests that need gunicorn itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_argv(*, workers: int, threads: int, extra: tuple[str, ...] = ()) -> Callable[[int], list[str]]:
    """gunicorn running `web:create_app()` with gthread workers, on the port it is given."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return lambda port: [gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class",
                         "gthread", "--threads", str(threads), "--no-control-socket", *extra, "web:create_app()"]


def serve_argv(*, workers: int) -> Callable[[int], list[str]]:
    """`hotspots serve` itself (which execs gunicorn), on the port it is given."""
    return lambda port: [sys.executable, "-m", "geo.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                         "--workers", str(workers)]


@contextmanager
def running_server(argv: Callable[[int], list[str]], env: dict[str, str], *, stdout=None,
                   timeout_s: float = 90) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) once /health answers 200; the process is stopped on exit. `env` is added
    to this process's environment (a value of None removes the variable)."""
    port = free_port()
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    proc = subprocess.Popen(argv(port), cwd=REPO, env=full_env, stdout=stdout,
                            stderr=subprocess.STDOUT if stdout is not None else None)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, f"the server exited with status {proc.returncode} before answering /health"
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the server did not answer /health in {timeout_s:.0f} s"
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
