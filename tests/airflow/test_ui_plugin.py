"""The Claude batch UI plugin inside the real api-server app: auth, pages from a real run, the re-run."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from claude_workloads.loan_disclosure_review import LoanReview
from tests.airflow.ui_support import api_server_app, logged_in, png_pixels, render, serving, token_for

WORKLOAD = "loan_disclosure_review"
DATES = [datetime(2026, 6, 6, 5, 0, tzinfo=UTC), datetime(2026, 6, 7, 5, 0, tzinfo=UTC)]
# A few records end quarantined (invalid_request_error) and a few need a recovery round (expired).
MILD_FAULTS = {"requests": {"errored": {"invalid_request_error": 0.03}, "expired": 0.03}}


@pytest.fixture
def two_nights(pipeline_for):
    """Two real nightly runs of the loan review, with a result mix worth plotting."""
    pipeline = pipeline_for(faults=MILD_FAULTS, seed=1)
    loans = pipeline.loan_input(120)
    for logical_date in DATES:
        pipeline.run(WORKLOAD, loans, logical_date=logical_date, sample_size=30)
    return pipeline, loans


@pytest.fixture
def client(airflow_db):
    with TestClient(api_server_app()) as test_client:
        yield test_client


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(role)}"}


def test_plugin_is_mounted_in_the_api_server_and_listed(client) -> None:
    plugins = client.get("/api/v2/plugins", headers=_auth("admin")).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "claude_batch_ui")
    assert ours["fastapi_apps"][0]["url_prefix"] == "/claude-batch"
    assert ours["external_views"][0]["href"] == "/claude-batch/"
    page = client.get("/claude-batch/", headers=_auth("viewer"))
    assert page.status_code == 200
    # Relative links: never built from the request's Host header.
    forged_host = client.get("/claude-batch/", headers={**_auth("viewer"), "Host": "evil.example"})
    assert f'href="/claude-batch/workloads/{WORKLOAD}"' in forged_host.text
    assert "evil.example" not in forged_host.text


PAGES = [
    "/claude-batch/",
    f"/claude-batch/workloads/{WORKLOAD}",
    f"/claude-batch/workloads/{WORKLOAD}/runs/1",
]
API = [
    ("GET", "/claude-batch/static/plotly.min.js"),
    ("GET", f"/claude-batch/api/workloads/{WORKLOAD}/history"),
    ("GET", f"/claude-batch/api/workloads/{WORKLOAD}/runs/1/counts"),
    ("POST", f"/claude-batch/api/workloads/{WORKLOAD}/rerun"),
    ("POST", f"/claude-batch/api/workloads/{WORKLOAD}/runs/1/undo"),
]


@pytest.mark.parametrize(("method", "path"), API)
def test_unauthenticated_api_requests_are_refused(client, method: str, path: str) -> None:
    body = {"business_key": "100001", "run_date": "2026-06-07"}
    assert client.request(method, path, json=body).status_code == 401
    forged = {"Authorization": "Bearer not-a-token"}
    assert client.request(method, path, json=body, headers=forged).status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_an_unauthenticated_page_request_goes_to_the_login_page(client, path: str) -> None:
    for cookies in ({}, {"_token": "forged"}):
        client.cookies.clear()
        client.cookies.update(cookies)
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/auth/login?next={quote(path, safe='')}"
    client.cookies.clear()


def _one_night(pipeline_for, count: int = 12, **options):
    pipeline = pipeline_for(**options)
    loans = pipeline.loan_input(count)
    assert pipeline.run(WORKLOAD, loans, logical_date=DATES[1]).state == "success"
    return pipeline, [json.loads(line)["loan_file_id"] for line in loans.read_text().splitlines()]


def _rerun(client, key: str, headers: dict, **body):
    return client.post(
        f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
        json={"business_key": key, "run_date": "2026-06-07", **body},
        headers=headers,
    )


def test_viewer_may_read_but_not_rerun(client, pipeline_for) -> None:
    pipeline, keys = _one_night(pipeline_for)
    created = pipeline.emulator.stats()["messages_created"]

    assert _rerun(client, keys[0], _auth("viewer")).status_code == 403

    assert pipeline.emulator.stats()["messages_created"] == created
    history = client.get(f"/claude-batch/api/workloads/{WORKLOAD}/history", headers=_auth("viewer"))
    assert [point["run_date"] for point in history.json()] == ["2026-06-07"]


@pytest.mark.parametrize(
    "field", [{"input_uri": "/etc/passwd"}, {"record": {"loan_file_id": "1", "text": "x"}}]
)
def test_a_body_naming_a_file_or_carrying_a_record_is_refused(client, pipeline_for, field: dict) -> None:
    pipeline, keys = _one_night(pipeline_for)
    created = pipeline.emulator.stats()["messages_created"]

    response = _rerun(client, keys[0], _auth("user"), **field)

    assert response.status_code == 422
    assert [problem["loc"][-1] for problem in response.json()["detail"]] == list(field)
    assert pipeline.emulator.stats()["messages_created"] == created


def test_a_date_without_a_run_or_an_unknown_name_is_a_404_with_a_message(client, pipeline_for) -> None:
    pipeline, keys = _one_night(pipeline_for)
    created = pipeline.emulator.stats()["messages_created"]
    user = _auth("user")

    for day in ("1900-01-01", "9999-12-31"):
        response = client.post(
            f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
            json={"business_key": keys[0], "run_date": day},
            headers=user,
        )
        assert response.status_code == 404 and f"has no run for {day}" in response.json()["detail"]
    missing = _rerun(client, "no-such-loan", user)
    assert missing.status_code == 404 and "no-such-loan" in missing.json()["detail"]
    assert pipeline.emulator.stats()["messages_created"] == created
    for path, message in [
        ("/claude-batch/workloads/nope", "no workload 'nope'"),
        (f"/claude-batch/workloads/{WORKLOAD}/runs/abc", "no run 'abc'"),
        (f"/claude-batch/workloads/{WORKLOAD}/runs/999", "no run '999'"),
        (f"/claude-batch/workloads/{WORKLOAD}/dates/1900-01-01", "has no run for 1900-01-01"),
        (f"/claude-batch/workloads/{WORKLOAD}/dates/yesterday", "not a date"),
    ]:
        response = client.get(path, headers=user)
        assert response.status_code == 404 and message in response.json()["detail"], path


def test_a_user_limited_to_one_dag_sees_nothing_of_the_other(airflow_db, pipeline_for, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.airflow.dag_scoped_auth.DagScopedAuthManager")
    pipeline, keys = _one_night(pipeline_for)
    run_id = pipeline.store().run_of_date(WORKLOAD, date(2026, 6, 7)).id
    created = pipeline.emulator.stats()["messages_created"]
    with TestClient(api_server_app()) as scoped:
        other = {"Authorization": f"Bearer {token_for('op', username='only-document_tagging')}"}
        owner = {"Authorization": f"Bearer {token_for('op', username=f'only-{WORKLOAD}')}"}

        index = scoped.get("/claude-batch/", headers=other)
        assert index.status_code == 200 and WORKLOAD not in index.text and "document_tagging" in index.text
        for method, path in [
            ("GET", f"/claude-batch/workloads/{WORKLOAD}"),
            ("GET", f"/claude-batch/workloads/{WORKLOAD}/runs/{run_id}"),
            ("GET", f"/claude-batch/workloads/{WORKLOAD}/dates/2026-06-07"),
            ("GET", f"/claude-batch/api/workloads/{WORKLOAD}/history"),
            ("GET", f"/claude-batch/api/workloads/{WORKLOAD}/runs/{run_id}/counts"),
            ("POST", f"/claude-batch/api/workloads/{WORKLOAD}/rerun"),
            ("POST", f"/claude-batch/api/workloads/{WORKLOAD}/runs/{run_id}/undo"),
        ]:
            body = (
                {"business_key": keys[0], "run_date": "2026-06-07"}
                if path.endswith("rerun")
                else {"rerun_id": 1}
            )
            response = scoped.request(method, path, json=body, headers=other, follow_redirects=False)
            assert response.status_code == 403, path
            assert keys[0] not in response.text and "2026-06-07" not in response.text, path
        # The run of one workload is not found under the other's name either.
        other_run = scoped.get(f"/claude-batch/workloads/document_tagging/runs/{run_id}", headers=other)
        assert other_run.status_code == 404
        assert pipeline.emulator.stats()["messages_created"] == created
        assert WORKLOAD in scoped.get("/claude-batch/", headers=owner).text


def test_the_rate_limit_answers_429_with_retry_after(client, pipeline_for, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__RERUN_RATE_LIMIT_PER_MINUTE", "2")
    pipeline, keys = _one_night(pipeline_for)
    created = pipeline.emulator.stats()["messages_created"]
    limited = {"Authorization": f"Bearer {token_for('user', username='rate-limited-analyst')}"}

    assert [_rerun(client, key, limited).status_code for key in keys[:2]] == [200, 200]
    third = _rerun(client, keys[2], limited)

    assert third.status_code == 429 and 0 < int(third.headers["Retry-After"]) <= 60
    assert "rate-limited-analyst" in third.json()["detail"]
    assert pipeline.emulator.stats()["messages_created"] == created + 2
    # The limit is per user: another analyst is not held back.
    other = {"Authorization": f"Bearer {token_for('user', username='another-analyst')}"}
    assert _rerun(client, keys[2], other).status_code == 200


def test_rerun_endpoint_returns_the_validated_output(client, pipeline_for) -> None:
    pipeline = pipeline_for()
    loans = pipeline.loan_input(40)
    assert pipeline.run(WORKLOAD, loans, logical_date=DATES[1]).state == "success"
    loan = json.loads(loans.read_text().splitlines()[5])

    response = client.post(
        f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
        json={"business_key": loan["loan_file_id"], "run_date": "2026-06-07"},
        headers=_auth("user"),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "rerun" and body["custom_id"] == f"loan-2026-06-07-{loan['loan_file_id']}"
    assert LoanReview.model_validate(body["output"]).loan_file_id == loan["loan_file_id"]
    stored = pipeline.store().get_output(WORKLOAD, loan["loan_file_id"], date(2026, 6, 7))
    assert stored.source == "rerun" and stored.output == body["output"]
    missing = client.post(
        f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
        json={"business_key": "no-such-loan", "run_date": "2026-06-07"},
        headers=_auth("user"),
    )
    assert missing.status_code == 404 and "no-such-loan" in missing.json()["detail"]


def test_run_page_shows_report_levers_quarantine_and_the_dag_run_link(client, two_nights) -> None:
    pipeline, _ = two_nights
    store = pipeline.store()
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == date(2026, 6, 7))
    quarantined = store.quarantine_rows(run.id)
    assert quarantined, "the faults should have quarantined a few records"

    page = client.get(f"/claude-batch/workloads/{WORKLOAD}/runs/{run.id}", headers=_auth("viewer"))

    assert page.status_code == 200
    assert f"run report: {WORKLOAD} 2026-06-07" in page.text
    assert "cost guard" in page.text and "sample size" in page.text
    assert all(row.reason.replace("'", "&#39;") in page.text for row in quarantined)
    # A link out of the plugin opens Airflow at the top level, not inside the plugin's frame.
    dag_run_path = f"/dags/{WORKLOAD}/runs/{run.dag_run_id.replace(':', '%3A').replace('+', '%2B')}"
    assert f'target="_top" href="{dag_run_path}"' in page.text
    other = client.get(f"/claude-batch/workloads/document_tagging/runs/{run.id}", headers=_auth("viewer"))
    assert other.status_code == 404


def test_history_page_renders_the_charts_in_chromium(two_nights, airflow_db, tmp_path) -> None:
    app = api_server_app()
    screenshot = tmp_path / "history.png"

    with serving(logged_in(app, token_for("viewer"))) as base_url:
        dom = render(f"{base_url}/claude-batch/workloads/{WORKLOAD}", screenshot)

    # Plotly drew five SVG charts, with bars for both nights and the health trend lines.
    assert dom.count('class="main-svg"') >= 10  # each chart has a main and an overlay svg
    for chart in ("chart-mix", "chart-cost", "chart-deadline", "chart-batches", "chart-health"):
        assert f'<div class="chart js-plotly-plot" id="{chart}">' in dom
    assert "Result mix per run" in dom and "quarantined: invalid_request" in dom
    assert dom.count('class="trace bars"') >= 5
    # The screenshot shows the stacked bars of the first chart (top left): the "succeeded" green and a
    # slice of the first quarantine class's red.
    width, _, channels, rows = png_pixels(screenshot)
    first_chart = [row[: (width // 2) * channels] for row in rows[120:480]]

    def pixels(color: bytes) -> int:
        return sum(row[x : x + 3] == color for row in first_chart for x in range(0, len(row), channels))

    assert pixels(bytes((0x2E, 0x7D, 0x32))) > 20_000, f"no stacked bars in {screenshot}"
    assert pixels(bytes((0xC6, 0x28, 0x28))) > 200, f"no quarantined slice in {screenshot}"
