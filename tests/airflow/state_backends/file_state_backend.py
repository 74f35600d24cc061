"""A custom ``[state_store] backend`` for the tests: every task and asset state row in one JSON file (named by
``FILE_STATE_BACKEND_PATH``), nothing in the metadata database's ``task_state_store`` table.

Configured with ``AIRFLOW__STATE_STORE__BACKEND=file_state_backend.FileStateBackend`` and this folder on
``PYTHONPATH``, for every component (the API server's execution API writes through it, the scheduler and
the CLI read through it). One ``fcntl`` lock per call keeps the API server and the CLI from interleaving.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from airflow.state import AssetScope, BaseStoreBackend, TaskScope


def _task_prefix(scope: TaskScope) -> str:
    return json.dumps(["task", scope.dag_id, scope.run_id, scope.task_id])[:-1]


def _name(scope) -> str:
    match scope:
        case TaskScope():
            return f"{_task_prefix(scope)}, {scope.map_index}]"
        case AssetScope():
            return json.dumps(["asset", scope.asset_id, scope.name, scope.uri])
    raise TypeError(f"unknown scope {scope!r}")


class FileStateBackend(BaseStoreBackend):
    def __init__(self) -> None:
        self.path = Path(os.environ["FILE_STATE_BACKEND_PATH"])

    @contextmanager
    def _rows(self):
        """All rows (scope name -> key -> JSON text), locked; written back when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            rows = json.loads(self.path.read_text()) if self.path.exists() else {}
            yield rows
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=1, sort_keys=True))
            tmp.replace(self.path)

    def get(self, scope, key, *, session=None):
        with self._rows() as rows:
            return rows.get(_name(scope), {}).get(key)

    def set(self, scope, key, value, *, expires_at=None, session=None):
        with self._rows() as rows:
            rows.setdefault(_name(scope), {})[key] = value

    def delete(self, scope, key, *, session=None):
        with self._rows() as rows:
            rows.get(_name(scope), {}).pop(key, None)

    def clear(self, scope, *, all_map_indices=False, session=None):
        with self._rows() as rows:
            if isinstance(scope, TaskScope) and all_map_indices:
                for name in [n for n in rows if n.startswith(_task_prefix(scope) + ",")]:
                    del rows[name]
            else:
                rows.pop(_name(scope), None)

    async def aget(self, scope, key, *, session=None):
        return self.get(scope, key)

    async def aset(self, scope, key, value, *, expires_at=None, session=None):
        self.set(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope, key, *, session=None):
        self.delete(scope, key)

    async def aclear(self, scope, *, all_map_indices=False, session=None):
        self.clear(scope, all_map_indices=all_map_indices)
