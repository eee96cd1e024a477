from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from claude_batch.strategy.spec import (
    MAX_BATCH_BYTES,
    DeadlineSpec,
    WorkloadRegistry,
    WorkloadSpec,
    WorkloadSpecError,
    bundled_workload_names,
    load_workload,
    load_workload_file,
    parse_workload,
    prompt_fingerprint,
)
from claude_batch.workloads import BUNDLED_WORKLOADS_DIR
from claude_workloads.document_tagging import Document, DocumentTags
from claude_workloads.loan_disclosure_review import LoanFile, LoanReview
from tests.unit.strategy.helpers import make_spec, spec_data


def test_bundled_specs_are_found_by_name() -> None:
    assert bundled_workload_names() == ["document_tagging", "loan_disclosure_review"]


@pytest.mark.parametrize("name", ["loan_disclosure_review", "document_tagging"])
def test_bundled_specs_load_and_resolve_their_models(name: str) -> None:
    spec = load_workload(name)
    assert spec.name == name
    assert spec.input_model() in (LoanFile, Document)
    assert spec.output_model() in (LoanReview, DocumentTags)
    assert spec.template_path("system").is_file() and spec.template_path("user").is_file()


def test_load_by_path_resolves_templates_next_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    for template in ("loan_disclosure_review.system.j2", "loan_disclosure_review.user.j2"):
        (tmp_path / "prompts" / template).write_text(
            (BUNDLED_WORKLOADS_DIR / "prompts" / template).read_text()
        )
    path = tmp_path / "copy.yaml"
    path.write_text((BUNDLED_WORKLOADS_DIR / "loan_disclosure_review.yaml").read_text())
    assert load_workload_file(path).base_dir == tmp_path


def test_unknown_workload_name_lists_the_bundled_ones() -> None:
    with pytest.raises(WorkloadSpecError, match="known: document_tagging, loan_disclosure_review"):
        load_workload("no_such_workload")


def test_invalid_yaml_says_so(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(WorkloadSpecError, match="not valid YAML"):
        load_workload_file(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"sharding": {"target_requests": 250_000}}, "sharding.target_requests: Input should be less than"),
        ({"sharding": {"target_bytes": "300MB"}}, "sharding.target_bytes"),
        (
            {"business_key": ["loan_id"]},
            "business_key: business key field(s) 'loan_id' not in LoanFile",
        ),
        ({"text_fields": ["body"]}, "text_fields: text field(s) 'body' not in LoanFile"),
        ({"stratify_by": "region"}, "stratify_by: stratify_by field 'region' not in LoanFile"),
        ({"input_schema": "claude_workloads.nowhere:LoanFile"}, "input_schema: cannot use"),
        ({"output_schema": "claude_workloads.loan_disclosure_review:risk_for"}, "not a pydantic model class"),
        ({"output_schema": "LoanReview"}, "output_schema: write it as 'package.module:ModelName'"),
        (
            {"deadline": {"timezone": "Mars/Olympus"}},
            "deadline.timezone: 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            {"deadline": {"local_time": 480}},
            "deadline.local_time: YAML read the time as the number 480; quote it",
        ),
        ({"prompt": {"user": "prompts/missing.j2"}}, "prompt: user template 'prompts/missing.j2' not found"),
        ({"modle": "claude-sonnet-4-5"}, "modle: Extra inputs are not permitted"),
        ({"sample": {"size": 500}}, "sample.size: Input should be less than or equal to 100"),
        ({"sample": {"pass_gate": 0}}, "sample.pass_gate"),
        ({"health": {"thresholds": {"bogus": {"warn": 0.1}}}}, "health.thresholds: unknown cause(s) bogus"),
        (
            {"health": {"thresholds": {"expired": {"warn": 0.5, "fail": 0.1}}}},
            "warn (0.5) is above fail (0.1)",
        ),
        ({"input": {"format": "sql", "uri": None}}, "input.query and input.sqlalchemy_url are required"),
        ({"input": {"format": "csv", "uri": None}}, "input.uri is required when format is csv"),
        ({"custom_id_prefix": "loan-review"}, "custom_id_prefix: 1 to 24 letters"),
        ({"name": "Loan Review"}, "name: use lowercase letters"),
        ({"schedule": "nightly"}, "schedule: 'nightly' is neither a 5-field cron expression"),
        ({"max_request_bytes": "200MB"}, "sharding: target_bytes (100000000) is below max_request_bytes"),
        ({"routing": {"expected_batch_latency": "soon"}}, "routing.expected_batch_latency"),
        ({"recovery": {"retry": ["invalid_request_error"]}}, "recovery.retry[0]"),
        ({"budget": {"usd": -5}}, "budget.usd: Input should be greater than 0"),
        (
            {"budget": {"usd": 5, "action": "ask"}},
            "budget.action: Input should be 'fail', 'warn' or 'approve'",
        ),
        ({"sample": {"action": "pause"}}, "sample.action: Input should be 'fail', 'warn' or 'approve'"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    ],
)
def test_bad_spec_fails_with_a_message_naming_the_field(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(WorkloadSpecError) as raised:
        make_spec(**change)
    assert expected in str(raised.value)


def test_every_problem_of_a_spec_is_listed_at_once() -> None:
    data = spec_data()
    data["max_tokens"] = -1
    data["sharding"]["target_requests"] = 0
    with pytest.raises(WorkloadSpecError) as raised:
        parse_workload(data, "loan.yaml")
    assert raised.value.problems[0].startswith("max_tokens:")
    assert raised.value.problems[1].startswith("sharding.target_requests:")
    assert str(raised.value).startswith("workload spec loan.yaml is invalid:")


def test_spec_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(WorkloadSpecError, match="must be a mapping"):
        parse_workload(["name"])


def _with_templates(tmp_path: Path, system: str, user: str) -> WorkloadSpec:
    (tmp_path / "system.j2").write_text(system)
    (tmp_path / "user.j2").write_text(user)
    data = spec_data()
    data["prompt"] = {"system": "system.j2", "user": "user.j2"}
    return parse_workload(data, base_dir=tmp_path)


def test_user_template_reading_a_field_the_input_lacks_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(WorkloadSpecError, match=r"reads record field.*'loan_number' not in LoanFile"):
        _with_templates(tmp_path, "Review.", "{{ record.loan_number }}")


def test_user_template_may_only_use_the_record(tmp_path: Path) -> None:
    with pytest.raises(WorkloadSpecError, match="may only use 'record', found today"):
        _with_templates(tmp_path, "Review.", "{{ record.text }} {{ today }}")


def test_system_template_must_not_depend_on_anything(tmp_path: Path) -> None:
    with pytest.raises(WorkloadSpecError, match="system template must not use variables"):
        _with_templates(tmp_path, "Review {{ record.product }}.", "{{ record.text }}")


def test_template_syntax_error_names_the_template_and_line(tmp_path: Path) -> None:
    with pytest.raises(WorkloadSpecError, match=r"user template 'user\.j2' line 2"):
        _with_templates(tmp_path, "Review.", "ok\n{% if %}")


@pytest.mark.parametrize(
    ("logical_date", "deadline"),
    [
        # a nightly run due at 01:00 New York must publish by 08:00 the same morning
        (datetime(2026, 6, 7, 5, 0, tzinfo=UTC), datetime(2026, 6, 7, 8, 0)),
        # a run due at 09:00 local has until 08:00 the next day
        (datetime(2026, 6, 7, 13, 0, tzinfo=UTC), datetime(2026, 6, 8, 8, 0)),
        # exactly 08:00 is not "after": the next day's 08:00
        (datetime(2026, 6, 7, 12, 0, tzinfo=UTC), datetime(2026, 6, 8, 8, 0)),
        # 23:30 UTC on the 6th is 19:30 in New York on the 6th
        (datetime(2026, 6, 6, 23, 30, tzinfo=UTC), datetime(2026, 6, 7, 8, 0)),
    ],
)
def test_deadline_is_the_next_local_time_after_the_logical_date(
    logical_date: datetime, deadline: datetime
) -> None:
    spec_deadline = DeadlineSpec(local_time=time(8), timezone="America/New_York")
    result = spec_deadline.deadline_for(logical_date)
    assert result.replace(tzinfo=None) == deadline
    assert result > logical_date


def test_deadline_keeps_local_time_across_a_dst_change() -> None:
    spec_deadline = DeadlineSpec(local_time=time(8), timezone="America/New_York")
    # New York moves to summer time at 02:00 on 8 March 2026
    before = spec_deadline.deadline_for(datetime(2026, 3, 7, 11, 30, tzinfo=UTC))
    after = spec_deadline.deadline_for(datetime(2026, 3, 8, 11, 30, tzinfo=UTC))
    assert (before.hour, after.hour) == (8, 8)
    assert after.astimezone(UTC) - before.astimezone(UTC) == timedelta(hours=23)


def test_naive_logical_date_is_refused(loan_spec: WorkloadSpec) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        loan_spec.deadline_for(datetime(2026, 6, 7, 5))


def test_run_date_is_airflows_ds_the_utc_date_of_the_logical_date(loan_spec: WorkloadSpec) -> None:
    # 22:00 in New York on June 6 is 02:00 UTC on June 7: Airflow's ds, so the run date, is June 7.
    assert loan_spec.run_date(datetime(2026, 6, 6, 22, 0, tzinfo=ZoneInfo("America/New_York"))) == date(
        2026, 6, 7
    )
    assert loan_spec.run_date(datetime(2026, 6, 7, 5, 0, tzinfo=UTC)) == date(2026, 6, 7)


def test_input_uri_takes_the_run_date(loan_spec: WorkloadSpec) -> None:
    assert loan_spec.input.uri_for(date(2026, 6, 7)) == ".demo/inputs/loan_disclosure_review/2026-06-07.jsonl"


def test_a_params_input_uri_takes_the_run_date_too(loan_spec: WorkloadSpec) -> None:
    assert (
        loan_spec.input.uri_for(date(2026, 6, 7), "s3://b/loans-{ds}.jsonl")
        == "s3://b/loans-2026-06-07.jsonl"
    )


def test_wait_for_reads_as_a_duration_and_is_for_files_only() -> None:
    assert make_spec(
        input={"format": "jsonl", "uri": "x.jsonl", "wait_for": "2h"}
    ).input.wait_for == timedelta(hours=2)
    with pytest.raises(WorkloadSpecError, match=r"input\.wait_for waits for a file"):
        make_spec(
            input={
                "format": "sql",
                "uri": None,
                "query": "SELECT 1",
                "sqlalchemy_url": "sqlite://",
                "wait_for": "2h",
            }
        )


def test_durations_read_as_hours_and_minutes() -> None:
    spec = make_spec(routing={"expected_batch_latency": "1h30m", "batch_safety_margin": 900})
    assert spec.routing.expected_batch_latency == timedelta(minutes=90)
    assert spec.routing.batch_safety_margin == timedelta(minutes=15)


def test_byte_sizes_read_with_units() -> None:
    spec = make_spec(sharding={"target_bytes": "50MiB"})
    assert spec.sharding.target_bytes == 50 * 2**20


def test_shard_target_is_capped_below_the_api_limit_with_room_for_the_body() -> None:
    with pytest.raises(WorkloadSpecError, match=r"sharding\.target_bytes"):
        make_spec(sharding={"target_bytes": MAX_BATCH_BYTES})


def test_price_override_takes_precedence_over_defaults() -> None:
    spec = make_spec(prices=[{"prefix": "claude-sonnet-4-5", "input_per_mtok": 2.0, "output_per_mtok": 10.0}])
    assert spec.price_table().price_for("claude-sonnet-4-5-20250929").input_per_mtok == 2.0
    assert spec.price_table().price_for("claude-sonnet-4-0").input_per_mtok == 3.0


def test_prompt_fingerprint_is_stable_and_changes_with_what_decides_the_answer(
    loan_spec: WorkloadSpec,
) -> None:
    assert prompt_fingerprint(loan_spec) == prompt_fingerprint(load_workload("loan_disclosure_review"))
    assert prompt_fingerprint(loan_spec) != prompt_fingerprint(make_spec(model="claude-opus-4-5"))
    assert prompt_fingerprint(loan_spec) != prompt_fingerprint(make_spec(max_tokens=2048))
    # the sample size or the deadline do not change what the model answers
    assert prompt_fingerprint(loan_spec) == prompt_fingerprint(make_spec(sample={"size": 80}))


def test_prompt_fingerprint_changes_with_the_template(tmp_path: Path) -> None:
    first = _with_templates(tmp_path, "Review.", "{{ record.text }}")
    before = prompt_fingerprint(first)
    (tmp_path / "user.j2").write_text("File:\n{{ record.text }}")
    assert prompt_fingerprint(first) != before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"model": "claude-sonnet-5", "temperature": 0.3},
            "temperature: claude-sonnet-5 refuses a non-default temperature",
        ),
        ({"model": "claude-sonnet-5-5", "top_k": 40}, "top_k: claude-sonnet-5-5 refuses a non-default top_k"),
        (
            {
                "model": "claude-opus-4-7",
                "max_tokens": 8000,
                "thinking": {"type": "enabled", "budget_tokens": 2048},
            },
            "thinking.type: claude-opus-4-7 refuses thinking enabled (it takes: disabled, adaptive)",
        ),
        (
            {"model": "claude-opus-5-5", "thinking": {"type": "disabled"}},
            "thinking.type: claude-opus-5-5 refuses thinking disabled",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 4096}},
            "thinking.budget_tokens: 4096 must be under max_tokens 1024",
        ),
        (
            {"thinking": {"type": "adaptive", "budget_tokens": 4096}},
            "budget_tokens is required with type enabled",
        ),
        ({"max_tokens": 100_000}, "max_tokens: 100000 is over claude-sonnet-4-6's maximum output of 64000"),
        (
            {"model": "claude-sonnet-4-0", "structured_output": "on"},
            "structured_output: claude-sonnet-4-0 does not take output_config.format",
        ),
        ({"model": "claude-unknown-9"}, "model: no capabilities known for model 'claude-unknown-9'"),
        ({"structured_output": "always"}, "structured_output: Input should be 'auto', 'on' or 'off'"),
    ],
)
def test_a_setting_the_model_refuses_fails_at_parse_time_naming_the_field(
    change: dict[str, Any], expected: str
) -> None:
    with pytest.raises(WorkloadSpecError) as raised:
        make_spec(**change)
    assert expected in str(raised.value)


def test_a_model_that_takes_temperature_keeps_it() -> None:
    assert make_spec(model="claude-opus-4-6", temperature=0.0).temperature == 0.0


def test_a_capability_row_in_the_spec_lets_an_unknown_model_through() -> None:
    row = {
        "prefix": "claude-private-1",
        "structured_outputs": False,
        "thinking": ["disabled"],
        "sampling": ["temperature"],
        "forced_tool_choice": True,
        "tokenizer": 1,
        "batch": True,
        "max_output_tokens": 8000,
    }
    spec = make_spec(
        model="claude-private-1",
        model_capabilities=[row],
        prices=[{"prefix": "claude-private-1", "input_per_mtok": 1.0, "output_per_mtok": 2.0}],
    )
    assert spec.output_format_schema() is None


def test_structured_output_auto_follows_the_model(loan_spec: WorkloadSpec) -> None:
    assert loan_spec.structured_output == "auto"
    assert loan_spec.output_format_schema() is not None
    assert make_spec(model="claude-sonnet-4-0").output_format_schema() is None


def test_prompt_fingerprint_changes_with_structured_outputs(loan_spec: WorkloadSpec) -> None:
    assert prompt_fingerprint(loan_spec) != prompt_fingerprint(make_spec(structured_output="off"))


@pytest.mark.parametrize(
    "name", ["/etc/passwd.yaml", "../loan_disclosure_review", "loan_disclosure_review.yaml", "Loan", ""]
)
def test_a_spec_is_loaded_by_name_never_by_path(name: str) -> None:
    with pytest.raises(WorkloadSpecError, match="loaded by name"):
        load_workload(name)


def test_the_strategy_loads_only_what_the_face_registered(monkeypatch) -> None:
    # The pure core ships no workload: with nothing registered, no spec is found by name and no
    # schema of the bundled package may be imported.
    monkeypatch.setattr("claude_batch.strategy.spec.WORKLOADS", WorkloadRegistry())
    with pytest.raises(WorkloadSpecError, match="no such workload"):
        load_workload("loan_disclosure_review")
    assert bundled_workload_names() == []
    with pytest.raises(WorkloadSpecError, match="none registered"):
        parse_workload(spec_data(), base_dir=BUNDLED_WORKLOADS_DIR)


def test_the_configured_specs_folder_adds_specs_by_name(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "prompts").symlink_to(BUNDLED_WORKLOADS_DIR / "prompts")
    (tmp_path / "night_review.yaml").write_text(
        (BUNDLED_WORKLOADS_DIR / "loan_disclosure_review.yaml").read_text()
    )
    monkeypatch.setenv("CLAUDE_BATCH_SPECS_DIR", str(tmp_path))

    assert load_workload("night_review").base_dir == tmp_path
    (tmp_path / "document_tagging.yaml").write_text("name: document_tagging\n")
    with pytest.raises(WorkloadSpecError, match="defined twice"):
        load_workload("document_tagging")


UNSAFE_TEMPLATES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ record|attr('__class__') }}",
    "{{ record['__class__'] }}",
    "{{ record.text._TemplateReference__context }}",
]


@pytest.mark.parametrize("template", UNSAFE_TEMPLATES)
def test_a_template_reaching_python_internals_fails_validation(tmp_path: Path, template: str) -> None:
    (tmp_path / "system.j2").write_text("Review.")
    (tmp_path / "user.j2").write_text(template + "\n{{ record.text }}")
    data = spec_data()
    data["prompt"] = {"system": "system.j2", "user": "user.j2"}

    with pytest.raises(WorkloadSpecError, match="never Python internals"):
        parse_workload(data, base_dir=tmp_path)


def test_a_template_outside_the_spec_folder_fails_validation(tmp_path: Path) -> None:
    data = spec_data()
    data["prompt"] = {"system": "../../../etc/hostname", "user": "prompts/loan_disclosure_review.user.j2"}

    with pytest.raises(WorkloadSpecError, match="must be a path inside the spec's folder"):
        parse_workload(data)


def test_a_schema_outside_the_allowed_packages_is_not_imported(monkeypatch) -> None:
    data = spec_data()
    data["output_schema"] = "tests.unit.strategy.helpers:NotThere"
    with pytest.raises(WorkloadSpecError, match="not under an allowed schema package"):
        parse_workload(data)

    monkeypatch.setenv("CLAUDE_BATCH_SCHEMA_MODULES", "claude_workloads, tests.unit")
    with pytest.raises(WorkloadSpecError, match="has no attribute 'NotThere'"):
        parse_workload(data)


MERGE = "claude_workloads.loan_disclosure_review:merge_reviews"


class _FieldsReversed(WorkloadSpec):
    """The spec with its fields declared in reverse order: its checks must not depend on that order."""


_FieldsReversed.__pydantic_fields__ = dict(reversed(_FieldsReversed.__pydantic_fields__.items()))
_FieldsReversed.model_rebuild(force=True)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"business_key": ["loan_id"]}, "business key field(s) 'loan_id' not in LoanFile"),
        ({"text_fields": ["body"]}, "text field(s) 'body' not in LoanFile"),
        ({"stratify_by": "region"}, "stratify_by field 'region' not in LoanFile"),
        ({"max_request_bytes": "200MB"}, "target_bytes (100000000) is below max_request_bytes"),
        (
            {"sample": {"expectations": [{"field": "grade", "one_of": ["low"]}]}},
            "expectation field 'grade' not in LoanReview",
        ),
        (
            {"sample": {"expectations": [{"field": "loan_file_id", "equals_input_field": "loan_no"}]}},
            "equals_input_field 'loan_no' not in LoanFile",
        ),
        (
            {"chunking": {"field": "borrower", "target_tokens": 1000, "merge": MERGE}},
            "chunking.field 'borrower' is not one of text_fields",
        ),
    ],
)
def test_a_cross_field_check_holds_whatever_order_the_fields_are_declared_in(
    change: dict[str, Any], expected: str
) -> None:
    data = {**spec_data(), **change}
    for model in (WorkloadSpec, _FieldsReversed):
        with pytest.raises(ValidationError) as raised:
            model.model_validate(data, context={"base_dir": BUNDLED_WORKLOADS_DIR})
        assert expected in str(raised.value), model.__name__
