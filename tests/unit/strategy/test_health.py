from __future__ import annotations

from claude_batch.strategy.health import HealthLevel, assess_health
from claude_batch.strategy.spec import HealthSpec, HealthThreshold

SPEC = HealthSpec(thresholds={"invalid_request_error": HealthThreshold(warn=0.01, fail=0.05)})


def test_a_clean_run_is_ok() -> None:
    report = assess_health({"succeeded": 990, "expired": 10}, [{"succeeded": 995, "expired": 5}], SPEC)
    assert (report.level, report.signals) == (HealthLevel.OK, [])
    assert report.shares["expired"] == 0.01


def test_over_the_fail_threshold_fails_with_a_plain_words_reason() -> None:
    report = assess_health({"succeeded": 90, "invalid_request_error": 10}, [], SPEC)
    (signal,) = report.signals
    assert report.level is HealthLevel.FAIL
    assert signal.message.startswith(
        "invalid_request_error is 10.0% of results, above the fail threshold 5.0%"
    )
    assert "outgrowing the context window" in signal.message


def test_over_the_warn_threshold_warns() -> None:
    report = assess_health({"succeeded": 98, "invalid_request_error": 2}, [], SPEC)
    assert report.level is HealthLevel.WARN


def test_a_share_rising_well_above_the_trailing_runs_warns_even_without_a_threshold() -> None:
    trailing = [{"succeeded": 99, "expired": 1}] * 5
    report = assess_health({"succeeded": 95, "expired": 5}, trailing, SPEC)
    (signal,) = report.signals
    assert (signal.cause, signal.level) == ("expired", HealthLevel.WARN)
    assert signal.message.startswith("expired is 5.0% of results (trailing 5 runs: 1.0%), rising")
    assert "run earlier or cut smaller shards" in signal.message


def test_small_wobbles_are_not_a_rise() -> None:
    report = assess_health({"succeeded": 997, "api_error": 3}, [{"succeeded": 999, "api_error": 1}], SPEC)
    assert report.level is HealthLevel.OK


def test_only_the_configured_number_of_trailing_runs_counts() -> None:
    spec = HealthSpec(thresholds={}, trailing_runs=1)
    trailing = [{"succeeded": 90, "expired": 10}, {"succeeded": 100}, {"succeeded": 100}]
    assert assess_health({"succeeded": 90, "expired": 10}, trailing, spec).level is HealthLevel.OK


def test_an_empty_run_raises_no_signal() -> None:
    assert assess_health({}, [], SPEC).level is HealthLevel.OK
