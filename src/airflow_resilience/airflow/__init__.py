"""The only package that touches Airflow: provider info, plugin, listeners, the state-store binding."""
