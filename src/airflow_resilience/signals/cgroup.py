"""OOM-kill evidence from the cgroup memory controller of this process.

The kernel counts the processes it OOM-killed in a cgroup (the Linux kernel's cgroup documentation):

* cgroup v2 (https://docs.kernel.org/admin-guide/cgroup-v2.html#memory-interface-files):
  ``<cgroup>/memory.events`` has lines ``low N``, ``high N``, ``max N``, ``oom N``, ``oom_kill N``
  (``oom_group_kill N`` on newer kernels); the counts include descendant cgroups.
* cgroup v1 (https://docs.kernel.org/admin-guide/cgroup-v1/memory.html, "OOM Control"):
  ``<memory mount>/<cgroup>/memory.oom_control`` has lines ``oom_kill_disable 0``, ``under_oom 0`` and,
  since Linux 4.13, ``oom_kill N``.

The process's cgroup comes from ``/proc/self/cgroup`` (``man 7 cgroups``): lines
``hierarchy-ID:controller-list:cgroup-path``; the v2 line is ``0::/path``, a v1 memory line looks like
``4:memory:/path``.

Read the counter when an attempt starts and when it ends; :func:`oom_evidence` turns the two readings
into ``{"oom_kills": increase}``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.debug("cgroup: cannot read %s: %s", path, exc)
        return None


def _counter(text: str, key: str) -> int | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            try:
                value = int(parts[1])
            except ValueError:
                return None
            return value if value >= 0 else None
    return None


def _cgroup_paths(text: str) -> tuple[str | None, str | None]:
    """``(v2 path, v1 memory path)`` from the contents of ``/proc/<pid>/cgroup``."""
    v2 = v1 = None
    for line in text.splitlines():
        hierarchy, sep1, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep1 and sep2) or not path.startswith("/"):
            continue
        path = path.strip()
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _cgroup_dir(mount: Path, cgroup_path: str) -> Path:
    """The process's cgroup directory under ``mount``, or ``mount`` itself when that does not exist.

    Inside a container without a private cgroup namespace, ``/proc/self/cgroup`` shows the host's path
    while the container's own cgroup is mounted as the root of ``/sys/fs/cgroup``.
    """
    own = mount / cgroup_path.strip("/")
    return own if own.is_dir() else mount


def _oom_kill_in(path: Path) -> int | None:
    text = _read(path) if path.is_file() else None
    return _counter(text, "oom_kill") if text is not None else None


def read_oom_kills(
    cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
    proc_self_cgroup: str | os.PathLike[str] = "/proc/self/cgroup",
) -> int | None:
    """The ``oom_kill`` counter of this process's memory cgroup, or ``None`` when it cannot be read.

    cgroup v2 first (``memory.events`` of the ``0::`` path), then cgroup v1
    (``memory/<path>/memory.oom_control`` of the ``memory`` controller's path). Never raises.
    """
    try:
        root = Path(cgroup_root)
        membership = _read(Path(proc_self_cgroup))
        if membership is None:
            return None
        v2, v1 = _cgroup_paths(membership)
        if v2 is not None:
            value = _oom_kill_in(_cgroup_dir(root, v2) / "memory.events")
            if value is not None:
                return value
        if v1 is not None:
            value = _oom_kill_in(_cgroup_dir(root / "memory", v1) / "memory.oom_control")
            if value is not None:
                return value
        log.debug("cgroup: no oom_kill counter found under %s for %r", root, membership[:200])
        return None
    except Exception as exc:  # noqa: BLE001 - a reader never raises
        log.debug("cgroup: unexpected error: %s: %s", type(exc).__name__, exc)
        return None


def oom_evidence(before: int | None, after: int | None) -> dict[str, Any]:
    """``{"oom_kills": after - before}`` when both readings are known and the counter rose, else ``{}``."""
    if before is None or after is None or isinstance(before, bool) or isinstance(after, bool):
        return {}
    try:
        increase = int(after) - int(before)
    except (TypeError, ValueError):
        return {}
    return {"oom_kills": increase} if increase > 0 else {}
