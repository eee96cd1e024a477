"""The Messages API params of one record: the exact ``params`` of a batch request or a sync call.

The spec's request options (``output_config.format`` with the output schema when the model takes
structured outputs, sampling parameters, thinking) are the same in every request. The system prompt is
rendered once per workload and sent as a list with one text block, marked
with ``cache_control`` when the spec caches it, so every request shares a byte-identical prefix the
prompt cache can match. The user message is the user template rendered with the record (a validated
instance of the input model, so ``record.items`` is a field, never a dict method). Templates use
StrictUndefined: a typo is an error, not an empty string in a paid prompt. They render sandboxed, and
every value a template inserts is escaped as XML text (``<`` as ``&lt;``...): a record field that holds
``</loan_file>`` cannot close the tag that wraps it, nor open one of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from claude_batch.strategy._json import JSON_ENCODER
from claude_batch.strategy.spec import WorkloadSpec, import_model, prompt_environment


class RequestBuilder:
    """Renders params for one workload; templates are loaded and the system prompt rendered once.

    :param base_dir: folder the template paths are relative to.
    :param cache_ttl: ``5m`` or ``1h``; used only when ``cache_system_prefix``.
    :param options_json: ``WorkloadSpec.request_options()`` as JSON (hashable, for the builder cache).
    :param token_factor: the model's tokens per generation-1 token (its tokenizer, from models.yaml),
        for size estimates made without count_tokens.
    """

    def __init__(
        self,
        base_dir: Path,
        system_template: str,
        user_template: str,
        cache_system_prefix: bool,
        cache_ttl: str,
        model: str,
        max_tokens: int,
        input_schema: str,
        options_json: str = "{}",
        token_factor: float = 1.0,
    ) -> None:
        environment = prompt_environment(base_dir)
        self.system_text = environment.get_template(system_template).render()
        self.system_bytes = len(self.system_text.encode())
        self._cache_control: dict[str, str] | None = None
        if cache_system_prefix:
            # The API's default TTL is 5 minutes; only the 1 h TTL is spelled out.
            self._cache_control = (
                {"type": "ephemeral", "ttl": "1h"} if cache_ttl == "1h" else {"type": "ephemeral"}
            )
        self._user = environment.get_template(user_template)
        # Jinja keeps a template's globals as a ChainMap that every render copies key by key; a plain
        # dict is copied in C, which makes a render about three times faster (it runs per record).
        self._user.globals = dict(self._user.globals)
        self._model = model
        self._max_tokens = max_tokens
        self._input_model = import_model(input_schema)
        self._options_json = options_json
        self.token_factor = token_factor
        self._line_parts = self._request_line_parts()

    def _request_line_parts(self) -> tuple[bytes, bytes, bytes]:
        """A request line's JSON cut around its custom_id and its user text, encoded once.

        The system prompt (often most of a line, and the same in every one) is escaped here instead
        of once per record; ``request_line`` only encodes the two strings that vary.
        """
        marker = "\x00request-line-part\x00"
        template = JSON_ENCODER.encode({"custom_id": marker, "params": self.params_for_text(marker)})
        head, middle, tail = template.split(JSON_ENCODER.encode(marker))
        return head.encode(), middle.encode(), (tail + "\n").encode()

    def request_line(self, custom_id: str, user_text: str) -> bytes:
        """``json_line({"custom_id": custom_id, "params": self.params_for_text(user_text)})``, faster."""
        head, middle, tail = self._line_parts
        return b"".join(
            (
                head,
                JSON_ENCODER.encode(custom_id).encode(),
                middle,
                JSON_ENCODER.encode(user_text).encode(),
                tail,
            )
        )

    def user_text(self, record: BaseModel | Mapping[str, Any]) -> str:
        """The rendered user message; a mapping is validated with the input model first."""
        if not isinstance(record, BaseModel):
            record = self._input_model.model_validate(record)
        return self._user.render(record=record)

    def params(self, record: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
        """The Messages API params for ``record`` (a fresh dict each call, safe to change)."""
        return self.params_for_text(self.user_text(record))

    def params_for_text(self, user_text: str) -> dict[str, Any]:
        """The params around an already rendered user message."""
        system_block: dict[str, Any] = {"type": "text", "text": self.system_text}
        if self._cache_control is not None:
            system_block["cache_control"] = dict(self._cache_control)
        return {
            "model": self._model,
            "max_tokens": self._max_tokens,
            "system": [system_block],
            "messages": [{"role": "user", "content": user_text}],
            # Decoded per call, so that every call's nested dicts are its own to change.
            **json.loads(self._options_json),
        }


@lru_cache(maxsize=32)
def _cached_builder(
    base_dir: Path,
    system_template: str,
    user_template: str,
    cache_system_prefix: bool,
    cache_ttl: str,
    model: str,
    max_tokens: int,
    input_schema: str,
    options_json: str,
    token_factor: float,
) -> RequestBuilder:
    return RequestBuilder(
        base_dir,
        system_template,
        user_template,
        cache_system_prefix,
        cache_ttl,
        model,
        max_tokens,
        input_schema,
        options_json,
        token_factor,
    )


def request_builder(spec: WorkloadSpec) -> RequestBuilder:
    """The builder of ``spec``, made once per process and prompt (a changed template needs a new
    process; Airflow runs each task in one)."""
    return _cached_builder(
        spec.base_dir,
        spec.prompt.system,
        spec.prompt.user,
        spec.prompt.cache_system_prefix,
        spec.prompt.cache_ttl,
        spec.model,
        spec.max_tokens,
        spec.input_schema,
        json.dumps(spec.request_options(), sort_keys=True),
        spec.capability_table().token_factor(spec.model),
    )
