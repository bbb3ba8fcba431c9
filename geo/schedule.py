"""Run a piece of work again and again on a fixed interval (`--every` of `sync` and `db backup`)."""

from __future__ import annotations

import signal
import time
from typing import Callable


def run_every(interval: float, run_once: Callable[[], object], *, echo: Callable[[str], None], what: str,
              stopped: str) -> None:
    """Run `run_once` every `interval` seconds until Ctrl-C or SIGTERM (docker stop), which end it cleanly."""
    # docker stop sends SIGTERM: stop the same clean way as Ctrl-C (work in progress rolls back).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            started = time.monotonic()
            run_once()
            wait = max(0.0, interval - (time.monotonic() - started))
            echo(f"next {what} in {wait:.0f} s (Ctrl-C stops)")
            time.sleep(wait)
    except KeyboardInterrupt:
        echo(stopped)
