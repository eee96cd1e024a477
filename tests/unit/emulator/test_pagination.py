"""Listing batches: newest first, pages by before_id/after_id/limit, as the SDK pages them."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from claude_emulator.testing import running_emulator
from tests.unit.emulator.support import batch_request, sdk_client


@pytest.fixture(scope="module")
def seven_batches() -> Iterator[tuple[anthropic.Anthropic, list[str]]]:
    """A fresh emulator holding seven batches; their ids newest first."""
    with running_emulator() as emulator:
        client = sdk_client(emulator)
        created = [client.messages.batches.create(requests=[batch_request(f"r-{i}")]).id for i in range(7)]
        yield client, created[::-1]


def test_the_first_page_is_the_newest_batches(seven_batches: tuple[anthropic.Anthropic, list[str]]) -> None:
    client, newest_first = seven_batches

    page = client.messages.batches.list(limit=3)

    assert [batch.id for batch in page.data] == newest_first[:3]
    assert page.has_more is True
    assert (page.first_id, page.last_id) == (newest_first[0], newest_first[2])


def test_after_id_pages_towards_older_batches(seven_batches: tuple[anthropic.Anthropic, list[str]]) -> None:
    client, newest_first = seven_batches

    second = client.messages.batches.list(limit=3, after_id=newest_first[2])
    last = client.messages.batches.list(limit=3, after_id=newest_first[5])

    assert [batch.id for batch in second.data] == newest_first[3:6] and second.has_more is True
    assert [batch.id for batch in last.data] == newest_first[6:] and last.has_more is False


def test_before_id_pages_towards_newer_batches(seven_batches: tuple[anthropic.Anthropic, list[str]]) -> None:
    client, newest_first = seven_batches

    page = client.messages.batches.list(limit=2, before_id=newest_first[4])
    first = client.messages.batches.list(limit=2, before_id=newest_first[2])

    assert [batch.id for batch in page.data] == newest_first[2:4] and page.has_more is True
    assert [batch.id for batch in first.data] == newest_first[0:2] and first.has_more is False


def test_the_sdk_auto_pager_walks_every_batch_once(
    seven_batches: tuple[anthropic.Anthropic, list[str]],
) -> None:
    client, newest_first = seven_batches

    walked = [batch.id for batch in client.messages.batches.list(limit=2)]

    assert walked == newest_first


def test_the_default_page_holds_twenty(seven_batches: tuple[anthropic.Anthropic, list[str]]) -> None:
    client, newest_first = seven_batches

    page = client.messages.batches.list()

    assert [batch.id for batch in page.data] == newest_first and page.has_more is False


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_limit_outside_1_to_1000_is_refused(
    seven_batches: tuple[anthropic.Anthropic, list[str]], limit: int
) -> None:
    client, _ = seven_batches

    with pytest.raises(anthropic.BadRequestError, match="limit: Input should be between 1 and 1000"):
        client.messages.batches.list(limit=limit)


def test_an_unknown_cursor_is_not_found(seven_batches: tuple[anthropic.Anthropic, list[str]]) -> None:
    client, _ = seven_batches

    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.list(after_id="msgbatch_01unknown")
