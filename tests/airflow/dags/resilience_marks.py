"""Progress marks of the test DAGs: one JSON line per event, appended atomically (O_APPEND, one write).

Not a DAG: a helper module deployed beside the DAG files (Airflow puts the DAGs folder on sys.path)."""

from __future__ import annotations

import json
import os
import time


def mark(path: str, **event) -> None:
    event.setdefault("at", time.time())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)
