"""The control-plane drill's refusals (pure: no Airflow): a disruption the environment cannot take says what
it needs."""

from __future__ import annotations

import pytest

from airflow_resilience.drills.control import CONTROL_PLANE, workload_of
from airflow_resilience.drills.inject import disrupt_control_plane


class Env:
    postgres_server = None
    redis_server = None
    executor = "local"


def test_db_and_broker_restart_need_servers_the_drill_may_restart() -> None:
    with pytest.raises(ValueError, match=r"postgres_server=PrivatePostgres"):
        disrupt_control_plane(Env(), "db_restart")
    with pytest.raises(ValueError, match=r"executor='celery', redis_server=PrivateRedis"):
        disrupt_control_plane(Env(), "broker_restart")
    with pytest.raises(ValueError, match="unknown control-plane disruption 'dns_outage'"):
        disrupt_control_plane(Env(), "dns_outage")


@pytest.mark.parametrize(("kind", "workload"), [
    ("scheduler_restart", "load"), ("api_restart", "load"), ("db_restart", "load"), ("broker_restart", "load"),
    ("triggerer_kill", "job"),
])
def test_each_kind_has_its_workload(kind, workload) -> None:
    assert kind in CONTROL_PLANE and workload_of(kind) == workload


def test_an_unknown_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from scheduler_restart, api_restart, triggerer_kill"):
        workload_of("eviction")
