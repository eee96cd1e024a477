"""The re-run endpoint under load and against a hostile upstream, and what the run page shows of re-runs."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from tests.airflow.browser import chromium_page
from tests.airflow.conftest import API_KEY
from tests.airflow.responsiveness import ResponsivenessProbe
from tests.airflow.ui_support import api_server_app, logged_in, serving, token_for

WORKLOAD = "loan_disclosure_review"
NIGHT = datetime(2026, 6, 7, 5, 0, tzinfo=UTC)
RUN_DATE = date(2026, 6, 7)
OTHER_KEY = "sk-ant-api03-SOMEONE-ELSES-KEY-9f8e7d6c5b4a"


def _night(pipeline_for, count: int, **options):
    pipeline = pipeline_for(**options)
    loans = pipeline.loan_input(count)
    assert pipeline.run(WORKLOAD, loans, logical_date=NIGHT).state == "success"
    return pipeline, [json.loads(line)["loan_file_id"] for line in loans.read_text().splitlines()]


def _bearer(username: str, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(role, username=username)}"}


def test_50_concurrent_reruns_leave_the_api_server_answering_and_stay_bounded(
    airflow_db, pipeline_for, monkeypatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__RERUN_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__RERUN_RATE_LIMIT_PER_MINUTE", "100")
    night, keys = _night(pipeline_for, 50)
    # A fresh emulator for the re-runs, each answer 0.4 s late: its in-flight count is theirs alone.
    slow = pipeline_for(
        store_url=night.store_url, faults={"endpoints": {"messages": {"slow": 1.0, "slow_seconds": 0.4}}}
    )
    headers = _bearer("busy-analyst")

    async def load(base_url: str) -> tuple[list[int], int]:
        version_probe = ResponsivenessProbe(f"{base_url}/api/v2/version")
        # Probed from a thread of its own, connected before the load: the clients' work is not counted.
        version_probe.start()
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
            loaded_from = time.monotonic()
            reruns = [
                asyncio.create_task(
                    client.post(
                        f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
                        json={"business_key": key, "run_date": "2026-06-07"},
                    )
                )
                for key in keys
            ]
            statuses = [(await task).status_code for task in reruns]
            loaded_until = time.monotonic()
        await asyncio.to_thread(version_probe.stop)
        return statuses, version_probe.answered_between(loaded_from, loaded_until)

    with serving(api_server_app()) as base_url:
        statuses, answered_while_loaded = asyncio.run(load(base_url))

    assert statuses == [200] * 50
    # The re-runs take seconds (50 answers 0.4 s late, 3 at a time); a server they hang answers none
    # of the probe's GETs meanwhile. How fast it answers is not asserted here (a loaded CI machine).
    assert answered_while_loaded >= 5, answered_while_loaded
    stats = slow.emulator.stats()
    assert stats["messages_created"] == 50
    assert stats["messages_max_in_flight"] == 3
    run = night.store().run_of_date(WORKLOAD, RUN_DATE)
    assert len(night.store().reruns(run.id)) == 50


@pytest.fixture
def header_echoing_gateway():
    """An upstream that fails every call with the request's headers in its error, as some gateways do."""
    gateway = FastAPI()

    @gateway.post("/v1/messages")
    async def echo(request: Request) -> JSONResponse:
        headers = dict(request.headers)
        message = f"upstream refused the request; headers were {headers}; also saw {OTHER_KEY}"
        return JSONResponse(
            {"type": "error", "error": {"type": "api_error", "message": message}}, status_code=400
        )

    with serving(gateway) as base_url:
        yield base_url


def test_an_upstream_error_echoing_the_key_shows_no_key(
    airflow_db, pipeline_for, monkeypatch, header_echoing_gateway
) -> None:
    night, keys = _night(pipeline_for, 5)
    monkeypatch.setenv(
        "AIRFLOW_CONN_ANTHROPIC_DEFAULT",
        json.dumps({"conn_type": "anthropic", "password": API_KEY, "host": header_echoing_gateway}),
    )
    with TestClient(api_server_app()) as client:
        response = client.post(
            f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
            json={"business_key": keys[0], "run_date": "2026-06-07"},
            headers=_bearer("echo-analyst"),
        )
        run = night.store().run_of_date(WORKLOAD, RUN_DATE)
        page = client.get(
            f"/claude-batch/workloads/{WORKLOAD}/runs/{run.id}", headers=_bearer("echo-analyst", "viewer")
        )

    assert response.status_code == 502
    detail = response.json()["detail"]
    # The gateway's words come through (the analyst needs to know what failed), the keys do not.
    assert "upstream refused the request" in detail and "***" in detail
    [rerun] = night.store().reruns(run.id)
    assert rerun.status == "failed"
    for text in (response.text, rerun.error, page.text):
        assert API_KEY not in text and OTHER_KEY not in text and "sk-ant-" not in text


@pytest.fixture
def night_with_quarantine(pipeline_for):
    """A night where a few records were refused by the API (invalid_request_error) and quarantined."""
    pipeline = pipeline_for(faults={"requests": {"errored": {"invalid_request_error": 0.05}}}, seed=1)
    loans = pipeline.loan_input(120)
    assert pipeline.run(WORKLOAD, loans, logical_date=NIGHT, sample_size=30).state == "success"
    run = pipeline.store().run_of_date(WORKLOAD, RUN_DATE)
    quarantined = [row for row in pipeline.store().quarantine_rows(run.id) if row.business_key]
    assert quarantined, "the faults should have quarantined a few records"
    # The next morning the API takes the records again: a fault-free emulator answers the re-runs.
    return pipeline_for(store_url=pipeline.store_url), run, quarantined


def test_the_run_page_shows_who_reran_what_and_counts_that_follow(night_with_quarantine, airflow_db) -> None:
    pipeline, run, quarantined = night_with_quarantine
    key = quarantined[0].business_key
    created = pipeline.emulator.stats()["messages_created"]
    with TestClient(api_server_app()) as client:
        page_path = f"/claude-batch/workloads/{WORKLOAD}/runs/{run.id}"
        before = client.get(page_path, headers=_bearer("page-reader", "viewer")).text
        response = client.post(
            f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
            json={"business_key": key, "run_date": "2026-06-07", "reason": "looked fixable"},
            headers=_bearer("ana.lyst"),
        )
        counts = client.get(
            f"/claude-batch/api/workloads/{WORKLOAD}/runs/{run.id}/counts",
            headers=_bearer("page-reader", "viewer"),
        )
        after = client.get(page_path, headers=_bearer("page-reader", "viewer")).text

    assert response.status_code == 200, response.text
    assert response.json()["released_quarantine"] == 1
    assert pipeline.emulator.stats()["messages_created"] == created + 1
    assert f'<span id="count-quarantined">{len(quarantined)}</span>' in before
    assert f'<span id="count-quarantined">{len(quarantined) - 1}</span>' in after
    assert counts.json()["quarantined"] == len(quarantined) - 1
    # The re-runs table: who, which record, why, and what it replaced.
    assert '<td class="who">ana.lyst</td>' in after and "looked fixable" in after and key in after
    assert f"quarantine: {quarantined[0].quarantine_class}" in after


def test_undo_puts_the_quarantine_row_back_once(night_with_quarantine, airflow_db) -> None:
    pipeline, run, quarantined = night_with_quarantine
    key = quarantined[0].business_key
    undo_path = f"/claude-batch/api/workloads/{WORKLOAD}/runs/{run.id}/undo"
    with TestClient(api_server_app()) as client:
        rerun_id = client.post(
            f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
            json={"business_key": key, "run_date": "2026-06-07"},
            headers=_bearer("undo-analyst"),
        ).json()["rerun_id"]

        assert (
            client.post(
                undo_path, json={"rerun_id": rerun_id}, headers=_bearer("undo-viewer", "viewer")
            ).status_code
            == 403
        )
        undone = client.post(undo_path, json={"rerun_id": rerun_id}, headers=_bearer("undo-lead"))
        again = client.post(undo_path, json={"rerun_id": rerun_id}, headers=_bearer("undo-lead"))
        unknown = client.post(undo_path, json={"rerun_id": rerun_id + 1000}, headers=_bearer("undo-lead"))

    assert undone.status_code == 200 and undone.json()["counts"]["quarantined"] == len(quarantined)
    assert again.status_code == 409 and "only a published one is undone" in again.json()["detail"]
    assert unknown.status_code == 404
    store = pipeline.store()
    assert store.get_output(WORKLOAD, key, RUN_DATE) is None
    assert key in {row.business_key for row in store.quarantine_rows(run.id)}
    [rerun] = store.reruns(run.id)
    assert (rerun.status, rerun.undone_by) == ("undone", "undo-lead")


def test_the_rerun_button_of_a_quarantined_row_publishes_it_and_the_counts_change_in_chromium(
    night_with_quarantine, airflow_db, tmp_path
) -> None:
    pipeline, run, quarantined = night_with_quarantine
    first = quarantined[0]
    app = logged_in(api_server_app(), token_for("user", username="browser-analyst"))

    with (
        serving(app) as base_url,
        chromium_page(
            f"{base_url}/claude-batch/workloads/{WORKLOAD}/runs/{run.id}", tmp_path / "chromium"
        ) as page,
    ):
        assert page.evaluate("document.getElementById('count-quarantined').textContent") == str(
            len(quarantined)
        )
        assert page.evaluate("document.querySelectorAll('#quarantine button.rerun').length") == len(
            quarantined
        )
        page.evaluate("document.getElementById('rerun-reason').value = 'fixed upstream'")
        page.evaluate(
            f"document.querySelector('button.rerun[data-business-key=\"{first.business_key}\"]').click()"
        )

        shown = page.wait_for(
            "document.querySelector('#rerun-result h3.ok') && document.getElementById('rerun-result').innerText"
        )
        counts = page.wait_for(
            f"document.getElementById('count-quarantined').textContent === '{len(quarantined) - 1}' && "
            "[document.getElementById('count-published').textContent, document.getElementById('count-classes').textContent]"
        )
        rows = page.evaluate(
            "[...document.querySelectorAll('#quarantine tr[data-business-key]')].map(r => r.dataset.businessKey)"
        )
        published_after_rerun = run_published(pipeline, run)
        [paid] = pipeline.store().reruns(run.id)
        rerun_spend = page.wait_for(
            "document.getElementById('count-reruns').textContent === '1' && "
            "document.getElementById('rerun-cost').textContent"
        )
        # The new re-run's row comes with its Undo button, no reload needed.
        page.wait_for("document.querySelectorAll('#reruns button.undo').length === 1")
        reruns = page.evaluate("document.getElementById('reruns').innerText")
        page.evaluate("document.querySelector('#reruns button.undo').click()")
        undone = page.wait_for(
            f"document.getElementById('count-quarantined') && "
            f"document.getElementById('count-quarantined').textContent === '{len(quarantined)}' && "
            "document.getElementById('reruns').innerText"
        )

    # The answer as a result: the output's fields in a table, not a JSON document.
    assert shown.startswith(f"Published {first.custom_id}") and "risk_level" in shown and "{" not in shown
    assert int(counts[0]) == published_after_rerun and first.business_key not in rows
    assert len(rows) == len(quarantined) - 1
    assert "browser-analyst" in reruns and "fixed upstream" in reruns
    assert f"quarantine: {first.quarantine_class}" in reruns
    # The page counts the re-run's spend, which the night's report leaves out.
    assert paid.cost_usd > 0 and float(rerun_spend) == pytest.approx(paid.cost_usd, abs=0.00006)
    # Undo put the quarantine row back, and the ledger row says who undid it.
    assert "undone by browser-analyst" in undone
    assert pipeline.store().get_output(WORKLOAD, first.business_key, RUN_DATE) is None


def run_published(pipeline, run) -> int:
    return pipeline.store().accounting(run.id).published


def test_the_history_charts_keep_their_axes_inside_the_chart_in_chromium(
    night_with_quarantine, airflow_db, tmp_path
) -> None:
    app = logged_in(api_server_app(), token_for("viewer", username="chart-reader"))

    with (
        serving(app) as base_url,
        chromium_page(f"{base_url}/claude-batch/workloads/{WORKLOAD}", tmp_path / "chromium") as page,
    ):
        page.wait_for("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 10")
        outside = page.evaluate(
            """[...document.querySelectorAll('.chart')].flatMap(chart => {
                 const box = chart.getBoundingClientRect();
                 return [...chart.querySelectorAll('.xtick text, .ytick text, .y2tick text, .g-xtitle text, .g-ytitle text, .g-y2title text')]
                   .filter(label => {
                     const r = label.getBoundingClientRect();
                     return r.width > 0 && (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1);
                   })
                   .map(label => chart.id + ': ' + label.textContent);
               })"""
        )
        labels = page.evaluate("document.querySelectorAll('.chart .ytick text').length")

    assert labels > 0 and outside == []


def test_a_rerun_of_an_oversized_record_sends_chunks_within_the_limit_and_publishes_them_merged(
    airflow_db, pipeline_for, monkeypatch
) -> None:
    from anthropic.resources.messages import Messages

    from claude_batch.operators.cost_guard import COUNT_TOKENS_PARAMS
    from claude_batch.strategy.cost import cost_usd
    from claude_batch.strategy.spec import load_workload
    from claude_batch.strategy.usage import Usage
    from claude_emulator.params import count_prompt_tokens
    from claude_emulator.tokens import DEFAULT_CONTEXT_WINDOW
    from claude_workloads.loan_disclosure_review import Disclosure
    from tests.airflow.test_chunking import oversized_input

    spec = load_workload(WORKLOAD)
    # About 1.3 MB of text: over max_request_bytes (1 MB) and the 200,000-token window of the spec and of
    # the emulator. Every disclosure but the finance charge stands in the middle of the file, so a single
    # chunk's answer (or the whole file refused) cannot pass for the merged review.
    present = {d: 0.5 for d in Disclosure if d is not Disclosure.FINANCE_CHARGE}
    pipeline = pipeline_for()
    loans = oversized_input(
        pipeline.tmp_path / "inputs" / "oversized.jsonl", {"900130": (1_300_000, present)}
    )
    assert pipeline.run(WORKLOAD, loans, logical_date=NIGHT).state == "success"
    store = pipeline.store()
    run = store.run_of_date(WORKLOAD, RUN_DATE)
    night = store.get_output(WORKLOAD, "900130", RUN_DATE)
    assert night is not None and night.output["missing_disclosures"] == [Disclosure.FINANCE_CHARGE.value]
    # A fresh emulator for the re-run: its usage is the re-run's alone.
    fresh = pipeline_for(store_url=pipeline.store_url)
    sent: list[dict] = []
    answered: list = []
    create = Messages.create

    def recording(self, **params):
        sent.append(params)
        message = create(self, **params)
        answered.append(message)
        return message

    monkeypatch.setattr(Messages, "create", recording)
    with TestClient(api_server_app()) as client:
        response = client.post(
            f"/claude-batch/api/workloads/{WORKLOAD}/rerun",
            json={"business_key": "900130", "run_date": "2026-06-07", "reason": "big file"},
            headers=_bearer("chunk-analyst"),
        )
        stored = store.get_output(WORKLOAD, "900130", RUN_DATE)
        [rerun] = store.reruns(run.id)
        undone = client.post(
            f"/claude-batch/api/workloads/{WORKLOAD}/runs/{run.id}/undo",
            json={"rerun_id": rerun.id},
            headers=_bearer("chunk-lead"),
        )

    assert response.status_code == 200, response.text
    assert len(sent) >= 2
    for params in sent:
        counted = {k: v for k, v in params.items() if k in COUNT_TOKENS_PARAMS}
        assert count_prompt_tokens(counted) + spec.max_tokens <= DEFAULT_CONTEXT_WINDOW
        assert len(json.dumps(params).encode()) <= spec.max_request_bytes
    # The chunks hold the whole file between them, once each (the spec's chunks do not overlap).
    text = json.loads(loans.read_text().splitlines()[-1])["text"]
    assert sum(len(params["messages"][0]["content"]) for params in sent) > len(text)
    assert fresh.emulator.stats()["messages_created"] == len(sent)
    # The merged review is published for the record, under its own custom_id.
    assert stored.source == "rerun" and stored.custom_id == "loan-2026-06-07-900130"
    assert stored.output["missing_disclosures"] == [Disclosure.FINANCE_CHARGE.value]
    assert response.json()["output"] == stored.output
    # The ledger row holds every chunk's tokens and cost.
    billed = fresh.emulator.stats()["usage"]["standard"]
    assert billed["input_tokens"] > 0
    assert {name: getattr(rerun, name) for name in billed} == billed
    usages = [Usage.from_message(message.model_dump(mode="json")) for message in answered]
    chunk_costs = [cost_usd(u, spec.model, batch=False, prices=spec.price_table()) for u in usages]
    assert rerun.cost_usd == pytest.approx(sum(chunk_costs)) and rerun.cost_usd > max(chunk_costs)
    assert response.json()["input_tokens"] == billed["input_tokens"]
    # Undo puts the output it replaced back.
    assert undone.status_code == 200, undone.text
    restored = store.get_output(WORKLOAD, "900130", RUN_DATE)
    assert (restored.source, restored.output) == (night.source, night.output) and night.source != "rerun"


def test_the_dag_run_link_leaves_airflows_sandboxed_plugin_frame_in_chromium(
    night_with_quarantine, airflow_db, tmp_path
) -> None:
    # Airflow's Browse menu shows the plugin in <iframe sandbox="allow-scripts allow-same-origin
    # allow-forms allow-downloads">: without allow-top-navigation a target="_top" click did nothing.
    _, run, _ = night_with_quarantine
    app = logged_in(api_server_app(), token_for("user", username="on-call"))
    run_page = f"/claude-batch/workloads/{WORKLOAD}/runs/{run.id}"

    with (
        serving(app) as base_url,
        chromium_page(f"{base_url}/plugin/claude-batch{run_page}", tmp_path / "chromium") as page,
    ):
        frame = "document.querySelector('iframe')"
        sandbox = page.wait_for(
            f"{frame} && {frame}.contentDocument && {frame}.contentDocument.getElementById('dag-run-link') "
            f"&& {frame}.getAttribute('sandbox')",
            timeout=90,
        )
        page.evaluate(f"{frame}.contentDocument.getElementById('dag-run-link').click()")
        landed = page.wait_for(f"location.pathname.includes('/dags/{WORKLOAD}/runs/') && location.pathname")

    assert "allow-top-navigation" not in sandbox
    assert unquote(landed) == f"/dags/{WORKLOAD}/runs/{run.dag_run_id}"
