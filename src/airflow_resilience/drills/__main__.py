import sys

from airflow_resilience.drills.cli import main

sys.exit(main())
