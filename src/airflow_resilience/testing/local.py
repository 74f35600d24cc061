"""Small facts of this machine the test tools share (no imports of the rest of the package)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def postgres_bin_dir() -> Path | None:
    """The newest directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    for candidate in (shutil.which("pg_ctl"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)):
        if candidate and os.access(candidate, os.X_OK):
            path = Path(candidate).resolve().parent
            if (path / "initdb").exists() and (path / "postgres").exists():
                return path
    return None
