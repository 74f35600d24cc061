"""``python -m airflow_resilience.testing.kube build``: build (or find) the cached control-plane binaries."""

import sys

from airflow_resilience.testing.kube.build import main

if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        print("usage: python -m airflow_resilience.testing.kube build", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main([]))
