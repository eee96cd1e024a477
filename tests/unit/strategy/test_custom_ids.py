from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_batch.strategy.custom_ids import (
    CUSTOM_ID,
    CustomIdRegistry,
    IdOutcome,
    custom_id_for,
    key_text,
)

RUN_DATE = date(2026, 6, 7)
key_values = st.lists(st.one_of(st.text(max_size=80), st.integers()), min_size=1, max_size=4)
prefixes = st.from_regex(r"[a-zA-Z0-9_]{1,24}", fullmatch=True)


def test_simple_key_gives_a_readable_id() -> None:
    assert custom_id_for("loan", ["114829"], RUN_DATE) == "loan-2026-06-07-114829"


def test_compound_key_of_plain_parts_stays_readable() -> None:
    assert custom_id_for("acct", ["BR01", 2024], RUN_DATE) == "acct-2026-06-07-BR01-2024"


def test_key_with_other_characters_is_slugged_with_a_hash_suffix() -> None:
    custom_id = custom_id_for("doc", ["kb/00042 (draft)"], RUN_DATE)
    assert custom_id.startswith("doc-2026-06-07-kb_00042_draft-")
    assert CUSTOM_ID.fullmatch(custom_id)


def test_long_key_is_shortened_to_64_characters() -> None:
    custom_id = custom_id_for("loan", ["x" * 200], RUN_DATE)
    assert len(custom_id) == 64
    assert CUSTOM_ID.fullmatch(custom_id)


def test_compound_parts_with_dashes_do_not_read_ambiguously() -> None:
    # joined with "-", both would read "a-b-c": the hash keeps them apart
    first = custom_id_for("k", ["a-b", "c"], RUN_DATE)
    second = custom_id_for("k", ["a", "b-c"], RUN_DATE)
    assert first != second


def test_text_and_number_of_the_same_key_are_the_same_key() -> None:
    assert custom_id_for("loan", [114829], RUN_DATE) == custom_id_for("loan", ["114829"], RUN_DATE)


def test_invalid_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        custom_id_for("loan review", ["1"], RUN_DATE)


def test_compound_key_text_is_a_json_array() -> None:
    assert key_text(["114829"]) == "114829"
    assert key_text(["BR-01", 2024]) == '["BR-01", "2024"]'


@given(prefix=prefixes, values=key_values, day=st.dates())
def test_custom_id_is_valid_for_any_key(prefix: str, values: list[str | int], day: date) -> None:
    assert CUSTOM_ID.fullmatch(custom_id_for(prefix, values, day))


@given(values=key_values)
def test_custom_id_is_deterministic(values: list[str | int]) -> None:
    assert custom_id_for("loan", values, RUN_DATE) == custom_id_for("loan", list(values), RUN_DATE)


@given(data=st.data(), parts=st.integers(min_value=1, max_value=4))
def test_distinct_keys_of_one_workload_get_distinct_ids(data: st.DataObject, parts: int) -> None:
    # a workload's keys all have the same number of parts
    same_shape = st.lists(st.one_of(st.text(max_size=80), st.integers()), min_size=parts, max_size=parts)
    first, second = data.draw(same_shape), data.draw(same_shape)
    if [str(v) for v in first] != [str(v) for v in second]:
        assert custom_id_for("loan", first, RUN_DATE) != custom_id_for("loan", second, RUN_DATE)


def test_registry_accepts_new_ids_and_reports_a_duplicate_key_with_the_first_position() -> None:
    with CustomIdRegistry() as registry:
        assert registry.register("loan-1", "1", 1).outcome is IdOutcome.NEW
        assert registry.register("loan-2", "2", 2).outcome is IdOutcome.NEW
        again = registry.register("loan-1", "1", 7)
    assert (again.outcome, again.first_position, again.first_key) == (IdOutcome.DUPLICATE_KEY, 1, "1")


def test_registry_reports_two_keys_on_one_id_as_a_collision() -> None:
    with CustomIdRegistry() as registry:
        registry.register("loan-x", "x/1", 3)
        clash = registry.register("loan-x", "x_1", 4)
    assert (clash.outcome, clash.first_key, clash.first_position) == (IdOutcome.COLLISION, "x/1", 3)


@given(keys=st.lists(st.text(max_size=70), max_size=40))
def test_registry_classifies_every_key_once(keys: list[str]) -> None:
    seen: dict[str, str] = {}
    with CustomIdRegistry() as registry:
        for position, key in enumerate(keys):
            custom_id = custom_id_for("p", [key], RUN_DATE)
            check = registry.register(custom_id, key, position)
            if custom_id not in seen:
                assert check.outcome is IdOutcome.NEW
                seen[custom_id] = key
            else:
                expected = IdOutcome.DUPLICATE_KEY if seen[custom_id] == key else IdOutcome.COLLISION
                assert check.outcome is expected
