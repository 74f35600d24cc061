"""The operator's view on a real Airflow 3.3.2 with real logins (SimpleAuthManager, not all-admins): the
Resilience tab and the fleet page in a real browser (Debian's chromium driven by Playwright), the data
routes' auth, and ``airflow resilience report`` — after a real SIGKILL of a task runner and a resumed try 2.

One Airflow for the module, with three users: ``admin`` (role admin), ``viewer`` (role viewer: reads every
DAG) and ``nobody`` (no role: the auth manager lets them see nothing). Screenshots go to
``reports/ui-screenshots/`` (next to the test log)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from airflow_resilience.testing.harness import AirflowEnvironment, EnvironmentUnavailable

pytestmark = pytest.mark.airflow

HERE = Path(__file__).parent
DAGS = HERE / "dags"
SHOTS = Path(os.environ.get("AIRFLOW_RESILIENCE_SCREENSHOTS", Path.cwd() / "reports" / "ui-screenshots"))
USERS = {"admin": ("admin", "admin-pw-1"), "viewer": ("viewer", "viewer-pw-2"), "nobody": ("", "nobody-pw-3")}
DAG, TASK = "infra_steps", "work"


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "Debian's chromium is not installed (apt-get install chromium): the browser tests need it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def ui_env(suite_services):
    try:
        af = AirflowEnvironment.create(
            dags=[DAGS / "infra_steps.py", DAGS / "resilience_marks.py"],
            database="postgres" if suite_services.available("PostgreSQL") else "sqlite",
            users=USERS,
            config={"AIRFLOW__RESILIENCE__INFRA_RETRY_DELAY": "1"},
        )
    except EnvironmentUnavailable as exc:
        pytest.fail(f"UI tests: {exc}") if os.environ.get("CI") == "true" else pytest.skip(str(exc))
    try:
        yield af
    finally:
        af.stop()


@pytest.fixture(scope="module")
def killed_run(ui_env, module_marks):
    """infra_steps: SIGKILL of the runner at item 8 of 30; try 2 resumes from the checkpoint and succeeds."""
    af, marks = ui_env, module_marks
    run_id = af.trigger(DAG, conf={"marks": str(marks.path), "steps": 30, "delay": 0.2})
    marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= 8)
    af.signal_runner(DAG, run_id, TASK, signal.SIGKILL)
    assert af.wait_for_run(DAG, run_id, timeout=180) == "success"
    assert [t.try_number for t in af.try_history(DAG, run_id, TASK)] == [1, 2]
    return run_id


def tab_route(run_id: str) -> str:
    return f"/resilience/ui/v1/dags/{DAG}/runs/{quote(run_id, safe='')}/tasks/{TASK}"


def get(af, path: str, user: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {af.token(user, USERS[user][1])}"} if user else {}
    return httpx.get(f"{af.api_url}{path}", headers=headers, timeout=30)


# ------------------------------------------------------------------------------------------------- auth
def test_every_data_route_answers_401_or_403_without_credentials(ui_env, killed_run):
    af = ui_env
    schema = httpx.get(f"{af.api_url}/resilience/openapi.json", timeout=30)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    gets = [p for p, ops in paths.items() if "get" in ops and p != "/v1/health"]
    assert "/ui/v1/fleet" in gets and "/ui/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}" in gets
    for path in gets:
        url = path.format(dag_id=DAG, run_id=quote(killed_run, safe=""), task_id=TASK)
        answer = httpx.get(f"{af.api_url}/resilience{url}", timeout=30)
        assert answer.status_code in (401, 403), (path, answer.status_code, answer.text[:200])
    # A forged cookie or token is no better.
    answer = httpx.get(f"{af.api_url}{tab_route(killed_run)}", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert answer.status_code in (401, 403)


def test_a_user_without_access_to_the_dag_gets_no_data(ui_env, killed_run):
    af = ui_env
    assert get(af, tab_route(killed_run), "nobody").status_code == 403
    fleet = get(af, "/resilience/ui/v1/fleet?since=1h", "nobody")
    assert fleet.status_code == 200 and fleet.json()["totals"]["failed_attempts"] == 0, fleet.text
    assert get(af, f"/resilience/ui/v1/fleet?since=1h&dag_id={DAG}", "nobody").status_code == 403
    # The viewer role reads every DAG: it sees the failure.
    assert get(af, "/resilience/ui/v1/fleet?since=1h", "viewer").json()["totals"]["failed_attempts"] == 1


def test_no_route_writes_or_runs_ddl_for_an_unidentified_caller(ui_env):
    """The watermark routes check the caller's nonce on Airflow's own tables first; health is read only.
    `airflow db migrate` created our tables (and only it does): an unidentified caller writes no row into
    them, and no request changes the schema."""
    af = ui_env

    def ours() -> set[str]:
        if af.database_kind == "postgres":
            rows = af.sql("SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%resilience%'")
        else:
            rows = af.sql("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%resilience%'")
        return {r[0] for r in rows}

    before = ours()
    assert before == {"resilience_watermark", "resilience_watermark_history", "alembic_version_resilience"}, before
    claim = {"name": "never.opened", "ti_id": "00000000-0000-0000-0000-000000000000", "nonce": "x"}
    for action, extra in (("acquire", {}), ("stage", {"fence": 1, "value": 1}), ("commit", {"fence": 1}), ("release", {"fence": 1})):
        answer = httpx.post(f"{af.api_url}/resilience/v1/watermarks/{action}", json={**claim, **extra}, timeout=30)
        assert answer.status_code == 403, (action, answer.status_code, answer.text)
    health = httpx.get(f"{af.api_url}/resilience/v1/health", timeout=30).json()
    assert (health["schema_state"], health["watermarks_available"]) == ("current", True), health
    assert health["watermark_schema"] == health["expected_watermark_schema"], health
    assert ours() == before
    assert af.sql("SELECT count(*) FROM resilience_watermark WHERE name = 'never.opened'") == [(0,)]
    assert af.sql("SELECT count(*) FROM resilience_watermark_history WHERE name = 'never.opened'") == [(0,)]


# --------------------------------------------------------------------------------------------- the data
def test_task_instance_route_tells_both_attempts(ui_env, killed_run):
    view = get(ui_env, tab_route(killed_run), "viewer").json()
    first, second = view["attempts"]
    assert (first["try_number"], first["cause"]["kind"], first["cause"]["reason"], first["verdict"]) == (
        1, "infrastructure", "signal.sigkill", "grant",
    )
    assert first["checkpoint"] is True and first["duration_s"] > 0
    assert (second["try_number"], second["state"], second["verdict"]) == (2, "success", None)
    assert view["budgets"]["infra"]["used"] == 1 and view["budgets"]["retries"] == {"limit": 0, "used": 0, "left": 0}
    ckpt = view["checkpoint"]
    assert ckpt["loops"] == {"items": 30} and ckpt["plan"] == "resume" and ckpt["from_try"] == 1
    assert ckpt["size_bytes"] > 0 and ckpt["updated_at"]


def test_report_cli_names_the_reason_and_the_compute_saved(ui_env, killed_run):
    af = ui_env
    out = json.loads(af.airflow("resilience", "report", "--since", "1h", "-o", "json").stdout)
    assert out["totals"]["failed_attempts"] == 1 and out["totals"]["grants"] == 1
    assert out["by_reason"] == [{"kind": "infrastructure", "reason": "signal.sigkill", "count": 1}]
    # Try 1 had checkpointed 8 or more items of 0.2 s before the kill: at least 1.6 s of its work was saved;
    # the rest of its run time (start-up, the item cut short) was redone. Together: its run time as Airflow
    # recorded it.
    first = af.try_history(DAG, killed_run, TASK)[0]
    run_time = (first.end_date - first.start_date).total_seconds()
    assert out["totals"]["saved_seconds"] >= 1.6, out["totals"]
    assert out["totals"]["redone_seconds"] > 0, out["totals"]
    assert abs(out["totals"]["saved_seconds"] + out["totals"]["redone_seconds"] - run_time) < 0.01, (out, run_time)
    table = af.airflow("resilience", "report", "--since", "1h").stdout
    assert "signal.sigkill" in table and "compute saved by checkpoints" in table
    assert "signal.sigkill" in af.airflow("resilience", "report", "--since", "1h", "-o", "yaml").stdout


# ---------------------------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def login(browser, af, user: str, next_path: str):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{af.api_url}{next_path}")
    page.wait_for_selector("input[name=username]", timeout=60_000)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", USERS[user][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
    return page


def test_browser_resilience_tab_and_fleet_page(ui_env, killed_run, browser):
    af = ui_env
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = login(browser, af, "admin", f"/dags/{DAG}/runs/{quote(killed_run, safe='')}/tasks/{TASK}")
    page.goto(f"{af.api_url}/dags/{DAG}/runs/{quote(killed_run, safe='')}/tasks/{TASK}/plugin/resilience")
    page.wait_for_selector("[data-testid=attempt-row-2]", timeout=60_000)
    assert page.get_by_role("tab", name="Resilience").count() + page.get_by_text("Resilience", exact=True).count() >= 1
    assert page.inner_text("[data-testid=attempt-kind-1]").strip() == "infrastructure"
    assert page.inner_text("[data-testid=attempt-reason-1]").strip() == "signal.sigkill"
    assert page.inner_text("[data-testid=attempt-verdict-1]").strip() == "grant"
    assert "items" in page.inner_text("[data-testid=checkpoint-panel]")
    assert "30" in page.inner_text("[data-testid=checkpoint-panel]")
    page.screenshot(path=str(SHOTS / "task-instance-tab.png"), full_page=True)

    page.goto(f"{af.api_url}/plugin/resilience-fleet")
    page.wait_for_selector("[data-testid=fleet-total-failed_attempts]", timeout=60_000)
    page.wait_for_selector("[data-testid='fleet-reason-signal.sigkill']", timeout=30_000)
    assert "1" in page.inner_text("[data-testid=fleet-total-failed_attempts]")
    page.screenshot(path=str(SHOTS / "fleet.png"), full_page=True)
    page.context.close()


def test_browser_user_without_access_sees_no_data(ui_env, killed_run, browser):
    af = ui_env
    tab = f"/dags/{DAG}/runs/{quote(killed_run, safe='')}/tasks/{TASK}/plugin/resilience"
    page = login(browser, af, "nobody", tab)
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.url, r.status)) if "/resilience/ui/" in r.url else None)
    page.goto(f"{af.api_url}{tab}")
    page.wait_for_load_state("networkidle", timeout=60_000)
    page.screenshot(path=str(SHOTS / "no-access.png"), full_page=True)
    # The host UI may refuse the page itself (no role: no plugins listed); where our tab renders, it shows
    # the refusal. Either way no data of the task instance reaches the page.
    if page.locator("[data-testid=resilience-tab]").count():
        page.wait_for_selector("[data-testid=resilience-error]", timeout=30_000)
        assert "access" in page.inner_text("[data-testid=resilience-error]").lower()
    assert all(status in (401, 403) for _url, status in answers), answers
    assert page.locator("[data-testid^=attempt-row-]").count() == 0
    assert "signal.sigkill" not in page.content()
    page.context.close()
