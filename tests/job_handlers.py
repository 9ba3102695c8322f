"""Job handlers for ``hubbub worker --run tests.job_handlers:NAME`` in tests."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any


def hash_slowly(data: dict[str, Any], progress: Callable[..., None]) -> dict[str, Any]:
    """"Transcode": hash ``steps`` blocks, pausing ``pause`` s after each, reporting progress."""
    steps, pause = int(data.get("steps", 10)), float(data.get("pause", 0.05))
    digest = hashlib.sha256()
    for i in range(steps):
        digest.update(bytes([i % 256]) * 65536)
        progress(100 * (i + 1) / steps, f"block {i + 1} of {steps}")
        time.sleep(pause)
    return {"sha256": digest.hexdigest(), "steps": steps}


def always_fails(data: Any, progress: Callable[..., None]) -> None:
    raise RuntimeError(f"cannot handle {data!r}")
