"""The plugin app's routes: every data route depends on Airflow's authentication (a guard for routes added
later; the real 401/403 answers are proven on a real Airflow in tests/airflow/test_ui_airflow.py), the
react apps point at bundles that ship in the package, and the plugin's UI entries import nothing heavy."""

from __future__ import annotations

import subprocess
import sys

from fastapi.routing import APIRoute

from airflow_resilience.airflow.ui_api import FLEET_BUNDLE, TASK_BUNDLE, UI_DIST, react_apps
from airflow_resilience.airflow.watermark_api import create_app

#: Routes a caller without an Airflow login may reach: health (read only) and the watermark calls of running
#: tasks, which prove their try with a nonce instead (docs/security.md).
UNAUTHENTICATED = {"/v1/health", "/v1/watermarks/acquire", "/v1/watermarks/stage", "/v1/watermarks/commit",
                   "/v1/watermarks/release"}


def _calls(dependant) -> set[str]:
    names = {getattr(dependant.call, "__name__", "")}
    for sub in dependant.dependencies:
        names |= _calls(sub)
    return names


def test_every_other_route_requires_an_airflow_user():
    routes = [r for r in create_app().routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= UNAUTHENTICATED | {"/ui/v1/fleet"}
    for route in routes:
        if route.path in UNAUTHENTICATED:
            continue
        assert "get_user" in _calls(route.dependant), f"{route.path} does not depend on Airflow's get_user"


def test_the_task_instance_route_checks_the_dag_permission_of_its_path():
    route = next(r for r in create_app().routes if isinstance(r, APIRoute) and "{dag_id}" in r.path)
    assert "{dag_id}" in route.path and "inner" in _calls(route.dependant)  # requires_access_dag(...)'s check


def test_react_apps_name_bundles_that_ship_in_the_package():
    apps = {a["destination"]: a for a in react_apps()}
    assert apps["task_instance"]["name"] == "Resilience"
    assert apps["task_instance"]["bundle_url"] == f"resilience/static/{TASK_BUNDLE}"
    assert apps["nav"]["bundle_url"] == f"resilience/static/{FLEET_BUNDLE}"
    for bundle in (TASK_BUNDLE, FLEET_BUNDLE):
        built = UI_DIST / bundle
        assert built.is_file(), f"{built} is missing: run `make ui`"
        text = built.read_text()
        assert "AirflowPlugin" in text  # the global the host UI reads the component from
        assert "react.production" not in text and len(text) < 200_000  # React comes from the host, not bundled


def test_loading_the_plugin_imports_no_fastapi():
    """The plugin is loaded in every Airflow process (task runners too): its UI entries must stay cheap."""
    code = (
        "import sys; from airflow_resilience.airflow.ui_api import react_apps; react_apps(); "
        "print('fastapi' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
