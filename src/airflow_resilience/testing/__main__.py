"""``python -m airflow_resilience.testing services start|stop|plan [STATE]`` (see :mod:`.services`)."""

from __future__ import annotations

import sys

from airflow_resilience.testing.services import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "services":
        print("usage: python -m airflow_resilience.testing services start|stop|plan [STATE]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(args[1:]))
