"""Structured outputs by default: on the same seed, a night with them needs fewer repairs than without."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from claude_batch.strategy.spec import SampleSpec

FREE_TEXT_BREAKS = {"requests": {"invalid_output": 0.08, "cut_off": 0.01}}


def _repairs(pipeline, day: date) -> int:
    """Requests resent by a repair, over every recovery round of the night (from its manifests)."""
    folder = pipeline.tmp_path / "data" / "loan_disclosure_review" / day.isoformat() / "recovery"
    return sum(
        json.loads(line)["action"] == "repair"
        for manifest in folder.glob("round-*-manifest.jsonl")
        for line in manifest.read_text().splitlines()
        if line.strip()
    )


def test_structured_outputs_need_fewer_repairs_than_free_text_on_the_same_seed(pipeline_for) -> None:
    pipeline = pipeline_for(faults=FREE_TEXT_BREAKS, seed=11)
    loans = pipeline.loan_input(300)
    lenient = SampleSpec(size=30, pass_gate=0.5, seed=7)
    nights = {"auto": date(2026, 6, 7), "off": date(2026, 6, 8)}

    for setting, day in nights.items():
        dag_run = pipeline.run(
            "loan_disclosure_review",
            loans,
            logical_date=datetime(day.year, day.month, day.day, 5, 0, tzinfo=UTC),
            sample_size=30,
            spec_changes=lambda s, setting=setting: s.model_copy(
                update={"structured_output": setting, "sample": lenient}
            ),
        )
        assert dag_run.state == "success"

    with_schema, free_text = _repairs(pipeline, nights["auto"]), _repairs(pipeline, nights["off"])
    # Free text breaks at both rates (about 9 % of 270 batch requests), structured answers only when
    # cut off at max_tokens (about 1 %).
    assert free_text > 10
    assert with_schema < free_text / 2
    store = pipeline.store()
    for day in nights.values():
        assert store.outputs_count("loan_disclosure_review", day) + _quarantined(store, day) == 300


def _quarantined(store, day: date) -> int:
    run = next(r for r in store.recent_runs("loan_disclosure_review") if r.logical_date == day)
    return sum(store.quarantine_counts(run.id).values())


def test_a_specs_temperature_reaches_the_messages_api_on_a_sync_night(pipeline_for) -> None:
    from datetime import timedelta

    pipeline = pipeline_for()
    loans = pipeline.loan_input(110)

    # A deadline 90 minutes away routes the night sync: every request goes through messages.create,
    # whose typed signature (SDK 2.x) no longer lists temperature; it travels in the body.
    dag_run = pipeline.run(
        "loan_disclosure_review",
        loans,
        deadline=datetime.now(UTC) + timedelta(minutes=90),
        spec_changes=lambda s: s.model_copy(update={"temperature": 0.2}),
    )

    assert dag_run.state == "success"
    stats = pipeline.emulator.stats()
    assert (stats["batches_created"], stats["messages_created"]) == (0, 110)
    assert pipeline.store().outputs_count("loan_disclosure_review", date(2026, 6, 7)) == 110
