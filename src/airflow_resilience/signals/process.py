"""Process evidence: the signal that killed the task runner, and whether a recorded PID is still alive."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

log = logging.getLogger(__name__)

#: ``psutil``'s ``create_time()`` on Linux is the boot time (whole seconds, from ``/proc/stat``) plus the
#: process's start in clock ticks, so it can be off by up to a second; PID reuse is assumed only beyond it.
CREATE_TIME_TOLERANCE = 1.0


def _valid_signal(num: int) -> bool:
    return 0 < num < signal.NSIG


def exit_evidence(returncode: int | None, *, wait_status: bool = False) -> dict[str, Any]:
    """``{"exit_signal": N}`` when the exit status says the process was killed by signal ``N``, else ``{}``.

    * ``returncode`` as Python reports it (``subprocess.Popen.returncode``, ``psutil.Process.wait()``,
      ``os.waitstatus_to_exitcode``; Airflow's task supervisor uses the same value): ``-N`` means
      "killed by signal N", ``>= 0`` is an exit code (no signal).
    * ``wait_status=True``: ``returncode`` is a raw status from ``os.wait``/``os.waitpid``; a signal is
      read with ``os.WIFSIGNALED``/``os.WTERMSIG`` (POSIX only).

    A positive value is never guessed to be a signal (``137`` may be a shell's ``128 + SIGKILL`` or a
    program's own exit code). Never raises.
    """
    try:
        if returncode is None or isinstance(returncode, bool):
            return {}
        code = int(returncode)
        if wait_status:
            if code < 0 or not hasattr(os, "WIFSIGNALED") or not os.WIFSIGNALED(code):
                return {}
            num = os.WTERMSIG(code)
        elif code < 0:
            num = -code
        else:
            return {}
        if not _valid_signal(num):
            log.debug("process: exit status %r names no signal", returncode)
            return {}
        return {"exit_signal": num}
    except Exception as exc:  # noqa: BLE001 - never raises
        log.debug("process: cannot read exit status %r: %s", returncode, exc)
        return {}


def pid_alive(
    pid: int, started_before: float | None = None, *, tolerance: float = CREATE_TIME_TOLERANCE
) -> bool | None:
    """Whether process ``pid`` is running and, if ``started_before`` is given, is the same process:
    ``True``, ``False`` — positively gone — or ``None``: unknown (act on it as on nothing).

    ``started_before`` is a time (epoch seconds) at which the process is known to have been running
    already, e.g. recorded right after it was started. A process with that PID created later
    (``psutil.Process.create_time() > started_before + tolerance``) is another process that reused the
    PID: gone. A zombie (exited, not yet reaped) is gone. A process we may not inspect (``AccessDenied``)
    counts as alive. No psutil, a PID that is not a number, or any other error -> ``None``; never raises.
    """
    try:
        import psutil
    except ImportError:  # psutil is an Airflow dependency; without it nothing can be said
        log.debug("process: psutil is not installed")
        return None
    try:
        if isinstance(pid, bool) or pid is None:
            return None
        if int(pid) <= 0:
            return None
        proc = psutil.Process(int(pid))
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            if started_before is not None and proc.create_time() > float(started_before) + tolerance:
                log.debug("process: pid %s was reused (created after %s)", pid, started_before)
                return False
        return True
    except psutil.AccessDenied:
        return True
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except Exception as exc:  # noqa: BLE001 - never raises; unknown is not evidence of death
        log.debug("process: cannot inspect pid %r: %s", pid, exc)
        return None
