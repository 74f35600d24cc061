"""Progress marks of the benchmark DAGs (JSON lines, one file per run): read them, wait for one."""

from __future__ import annotations

import json
import time
from pathlib import Path


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_mark(path: Path, pred, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in read(path):
            if pred(e):
                return e
        time.sleep(0.05)
    raise TimeoutError(f"no mark in {timeout}s: {read(path)[-3:]}")
