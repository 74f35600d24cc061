"""Fault injection for the do-no-harm tests, on PYTHONPATH of the scheduler only.

With ``RESILIENCE_TEST_BREAK_PSUTIL=<file>``, the lost-worker detector process (and no other) gets a psutil
whose ``Process.status()`` raises an unexpected error; each call is logged to ``<file>``, so the test can
tell the detector really asked. Every other process started with this PYTHONPATH is left alone.
"""

import os

_log = os.environ.get("RESILIENCE_TEST_BREAK_PSUTIL")
if _log:
    try:
        with open("/proc/self/cmdline", "rb") as fh:
            _cmdline = fh.read()
    except OSError:
        _cmdline = b""
    if b"airflow_resilience.airflow.scheduler" in _cmdline:
        import psutil

        def _broken_status(self):
            with open(_log, "a") as out:
                out.write(f"{self.pid}\n")
            raise OSError(5, "Input/output error (injected by the do-no-harm test)")

        psutil.Process.status = _broken_status
