"""The workload spec: everything a data engineer declares about one bulk Claude workload, from YAML.

A spec is validated once, when it is loaded (at DAG parse time), so a mistake fails before any
money is spent, with a message that names the field: ``sharding.target_requests: Input should be
less than or equal to 100000 (got 250000)``. Import paths and prompt templates are resolved and
checked against each other at load time too (a template that reads ``record.loan_id`` when the input
model has no such field is a spec error, not a failure at 3 a.m.).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import jinja2.meta
import jinja2.nodes
import yaml
from jinja2.sandbox import SandboxedEnvironment
from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from claude_batch.strategy.chunking import DEFAULT_HEADINGS, MergeRule
from claude_batch.strategy.cost import ModelPrice, PriceTable, default_price_table
from claude_batch.strategy.failures import RESULT_CAUSES, RETRYABLE_CAUSES, default_health_thresholds
from claude_batch.strategy.models import (
    CapabilityTable,
    ModelCapabilities,
    ThinkingMode,
    UnfitSchemaError,
    UnknownModelError,
    default_capability_table,
    structured_output_schema,
)

SPECS_DIR_VARIABLE = "CLAUDE_BATCH_SPECS_DIR"
"""A folder of more specs (``<name>.yaml``, templates relative to it), besides the bundled ones."""

SCHEMA_MODULES_VARIABLE = "CLAUDE_BATCH_SCHEMA_MODULES"
"""Comma-separated module prefixes a spec's ``input_schema``/``output_schema`` may import from."""

MAX_BATCH_REQUESTS = 100_000
"""The API's limit of requests per Message Batch."""

MAX_BATCH_BYTES = 256_000_000
"""The API's "256 MB" per batch body, read as decimal megabytes: the smaller of the two readings,
so a shard under it is under the limit whichever the API means (256 MiB would be 268,435,456)."""

BATCH_BODY_OVERHEAD = len(b'{"requests":[]}')
"""Bytes the create-batch body adds around the request lines (their newlines stand in for commas)."""

DEFAULT_CONTEXT_WINDOW_TOKENS = 200_000

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PREFIX = re.compile(r"^[a-zA-Z0-9_]{1,24}$")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_DURATION_PART = re.compile(r"(\d+)\s*([dhms])")
_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class WorkloadSpecError(ValueError):
    """A workload spec that cannot be used, with one readable line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"workload spec {source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


def _parse_duration(value: Any) -> Any:
    """Accept ``90s``, ``30m``, ``2h``, ``1d``, ``1h30m`` besides pydantic's own duration forms."""
    if isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION_PART.findall(text)
        if parts and _DURATION_PART.sub("", text).strip() == "":
            return timedelta(**{_DURATION_UNITS[unit]: int(n) for n, unit in parts})
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


@cache
def import_model(path: str) -> type[BaseModel]:
    """The pydantic model class named by ``module:Name``."""
    module_name, _, attribute = path.partition(":")
    model = getattr(importlib.import_module(module_name), attribute)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{path} is a {type(model).__name__}, not a pydantic model class")
    return model


class WorkloadRegistry:
    """The workloads this process may load: folders of specs and the packages their schemas come from.

    The strategy ships no workload of its own; the Airflow face registers the bundled ones
    (``claude_batch.workloads``) before it loads a spec, so the pure core never imports content.
    """

    def __init__(self) -> None:
        self._spec_dirs: list[Path] = []
        self._schema_packages: list[str] = []

    def register(self, spec_dir: Path, schema_package: str) -> None:
        """Make the specs in ``spec_dir`` loadable by name, their schemas importable from ``schema_package``."""
        spec_dir = spec_dir.resolve()
        if spec_dir not in self._spec_dirs:
            self._spec_dirs.append(spec_dir)
        if schema_package not in self._schema_packages:
            self._schema_packages.append(schema_package)

    @property
    def spec_dirs(self) -> tuple[Path, ...]:
        return tuple(self._spec_dirs)

    @property
    def schema_packages(self) -> tuple[str, ...]:
        return tuple(self._schema_packages)

    def default_dir(self) -> Path:
        """Where a spec's templates are looked up when no folder is given: the first registered folder."""
        if not self._spec_dirs:
            raise WorkloadSpecError(
                "<registry>",
                ["no workload folder is registered (the Airflow face registers the bundled ones)"],
            )
        return self._spec_dirs[0]


WORKLOADS = WorkloadRegistry()
"""The process's registry; ``claude_batch.workloads.register_bundled_workloads`` fills it."""


def allowed_schema_modules() -> tuple[str, ...]:
    """The module prefixes schemas may come from: ``$CLAUDE_BATCH_SCHEMA_MODULES``, else the registered packages."""
    configured = os.environ.get(SCHEMA_MODULES_VARIABLE, "")
    prefixes = tuple(p.strip() for p in configured.split(",") if p.strip())
    return prefixes or WORKLOADS.schema_packages


def _check_import_path(
    path: str, load: Callable[[str], object] = import_model, shape: str = "package.module:ModelName"
) -> str:
    """A ``package.module:name`` from an allowed module that ``load`` (default: a pydantic model) can
    import; anything else is refused with the form it should take."""
    if not _IMPORT_PATH.fullmatch(path):
        raise ValueError(f"write it as '{shape}', got {path!r}")
    _check_allowed_module(path)
    try:
        load(path)
    except (ImportError, AttributeError, TypeError) as error:
        raise ValueError(f"cannot use {path!r}: {error}") from error
    return path


def _check_allowed_module(path: str) -> None:
    module = path.partition(":")[0]
    allowed = allowed_schema_modules()
    # Importing a module runs it: only the configured packages of schemas are ever imported.
    if not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed):
        raise ValueError(
            f"{module!r} is not under an allowed schema package ({', '.join(allowed) or 'none registered'}); "
            f"add its package to ${SCHEMA_MODULES_VARIABLE}"
        )


def _require_fields(model_path: str | None, names: list[str], what: str) -> None:
    """Fail when a field named in the spec is not a field of the model it refers to."""
    if model_path is None:
        return
    model = import_model(model_path)
    unknown = [n for n in names if n not in model.model_fields]
    if unknown:
        raise ValueError(
            f"{what} {', '.join(map(repr, unknown))} not in {model.__name__} "
            f"(its fields: {', '.join(model.model_fields)})"
        )


class InputFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    SQL = "sql"


class InputSpec(BaseModel):
    """Where the records come from.

    :param format: ``jsonl`` or ``csv`` (a file at ``uri``) or ``sql`` (``query`` through ``sqlalchemy_url``).
    :param uri: path or URL of the file (``file://``, ``s3://``, or a path); ``{ds}`` becomes the run date.
    :param query: the SELECT that yields one row per record.
    :param sqlalchemy_url: the database to run ``query`` on.
    :param wait_for: how long a night whose file has not landed yet waits for it (deferred, no worker
        slot) before failing; ``None`` fails at once.
    :param max_record_bytes: the longest line (JSONL) or row (CSV) read as a record; a longer one is
        skipped unread and quarantined with its size. Well above ``max_request_bytes``: a record
        larger than one request is not bad input.
    """

    model_config = ConfigDict(extra="forbid")

    format: InputFormat
    uri: str | None = None
    query: str | None = None
    sqlalchemy_url: str | None = None
    wait_for: Duration | None = None
    max_record_bytes: ByteSize = Field(default=ByteSize(64_000_000), ge=1024)

    @model_validator(mode="after")
    def _fields_match_format(self) -> InputSpec:
        if self.format is InputFormat.SQL:
            if not (self.query and self.sqlalchemy_url):
                raise ValueError("input.query and input.sqlalchemy_url are required when format is sql")
            if self.uri is not None:
                raise ValueError("input.uri is for files; a sql input reads input.query")
            if self.wait_for is not None:
                raise ValueError("input.wait_for waits for a file; a sql input has none")
        else:
            if not self.uri:
                raise ValueError(f"input.uri is required when format is {self.format.value}")
            if self.query is not None or self.sqlalchemy_url is not None:
                raise ValueError(f"input.query and input.sqlalchemy_url are for sql, not {self.format.value}")
        return self

    def uri_for(self, run_date: date, override: str | None = None) -> str:
        """The file of one run: ``override`` (a run's Param) or else ``uri``, with ``{ds}`` replaced by
        the run date (YYYY-MM-DD) in either, so a Param can name a dated file too."""
        template = override or self.uri
        if template is None:
            raise ValueError("a sql input has no uri")
        return template.replace("{ds}", run_date.isoformat())


class PromptSpec(BaseModel):
    """The Jinja templates of the request, relative to the spec file's folder.

    :param system: the system prompt template; it may not use the record, because it is the prefix
        shared by every request (and the one that is cached).
    :param user: the user message template; it sees the input record as ``record``.
    :param cache_system_prefix: mark the system prompt with ``cache_control`` so repeated requests
        read it from the prompt cache (0.1x input price) instead of paying for it each time.
    :param cache_ttl: ``5m`` (write 1.25x) or ``1h`` (write 2x; worth it when a batch runs for hours).
    """

    model_config = ConfigDict(extra="forbid")

    system: str
    user: str
    cache_system_prefix: bool = False
    cache_ttl: Literal["5m", "1h"] = "5m"


class Expectation(BaseModel):
    """A check on one sample output beyond its schema; every condition given must hold.

    :param field: a field of the output model.
    :param equals_input_field: the output field must equal this input field (the model echoed the
        right record id back, for instance).
    :param one_of: the output field must be one of these values.
    """

    model_config = ConfigDict(extra="forbid")

    field: str
    equals_input_field: str | None = None
    one_of: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _has_a_condition(self) -> Expectation:
        if self.equals_input_field is None and self.one_of is None:
            raise ValueError("an expectation needs equals_input_field or one_of")
        return self


GateAction = Literal["fail", "warn", "approve"]
"""What a gate (the sample, the budget) does when its check fails."""


class SampleSpec(BaseModel):
    """The synchronous sample that must pass before the bulk spend.

    :param size: the baseline sample, 30 to 100 (under 30 says little about a pass rate, over 100
        spends at full price for little more certainty); a prompt fingerprint that passed before
        samples half of it, a new one double, always within 30..100 (``sampling.sample_size``).
    :param pass_gate: share of sample outputs that must be valid for the run to go on.
    :param seed: makes the selection repeatable.
    :param expectations: checks beyond the output schema.
    :param action: under the gate, ``fail`` stops the run before the bulk spend, ``warn`` logs and
        goes on, ``approve`` waits for a person to approve or reject in the Airflow UI.
    """

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=50, ge=30, le=100)
    pass_gate: float = Field(default=0.9, gt=0, le=1)
    seed: int = 0
    expectations: list[Expectation] = Field(default_factory=list)
    action: GateAction = "fail"


class ShardingSpec(BaseModel):
    """The size a shard (one Message Batch) is cut at; the API limits are never crossed.

    :param target_requests: requests per shard, at most 100,000.
    :param target_bytes: bytes of request lines per shard (``64MB``, ``100MiB`` or an int), at most
        256,000,000 minus the body's envelope.
    """

    model_config = ConfigDict(extra="forbid")

    target_requests: int = Field(default=10_000, ge=1, le=MAX_BATCH_REQUESTS)
    target_bytes: ByteSize = Field(
        default=ByteSize(100_000_000), ge=1, le=MAX_BATCH_BYTES - BATCH_BODY_OVERHEAD
    )


class DeadlineSpec(BaseModel):
    """When the outputs must be published, as a local wall-clock time.

    :param local_time: ``"08:00"`` (quote it: YAML reads an unquoted 8:00 as the number 480).
    :param timezone: an IANA name such as ``America/New_York``.
    """

    model_config = ConfigDict(extra="forbid")

    local_time: time
    timezone: str

    @field_validator("local_time", mode="before")
    @classmethod
    def _quoted_time(cls, value: Any) -> Any:
        if isinstance(value, int):
            raise ValueError(f"YAML read the time as the number {value}; quote it, e.g. '08:00'")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'Europe/Paris')") from error
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def deadline_for(self, logical_date: datetime) -> datetime:
        """The first ``local_time`` in ``timezone`` strictly after ``logical_date``.

        With Airflow 3's cron timetables the logical date is the moment the run is due, so a nightly
        run due at 01:00 with an 08:00 deadline must publish by 08:00 the same morning, and a run due
        at 09:00 (or triggered by hand at 09:00) has until 08:00 the next day. The result is aware,
        in the deadline's zone, for readable logs; a nonexistent local time (DST gap) falls an hour
        later, as zoneinfo does. Python subtracts two datetimes of one zone as wall-clock times, so
        do arithmetic against UTC datetimes (``routing.StepFacts`` converts to UTC for that reason).
        """
        if logical_date.tzinfo is None:
            raise ValueError("logical_date must be timezone-aware")
        local = logical_date.astimezone(self.zone)
        candidate = datetime.combine(local.date(), self.local_time, tzinfo=self.zone)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), self.local_time, tzinfo=self.zone)
        return candidate


class RoutingSpec(BaseModel):
    """The levers of the sync-or-batch decision (see ``routing.decide_route``).

    :param expected_batch_latency: how long a batch of this workload usually takes to end.
    :param batch_safety_margin: time kept in hand beyond that latency for recovery rounds.
    :param sync_requests_per_minute: the organisation's rate limit share for this workload.
    :param sync_concurrency: synchronous calls in flight at once.
    :param expected_sync_latency: how long one synchronous call takes.
    :param min_batch_volume: below this many requests a batch's wait is not worth its saving.
    """

    model_config = ConfigDict(extra="forbid")

    expected_batch_latency: Duration = timedelta(hours=1)
    batch_safety_margin: Duration = timedelta(hours=2)
    sync_requests_per_minute: int = Field(default=50, ge=1)
    sync_concurrency: int = Field(default=8, ge=1)
    expected_sync_latency: Duration = timedelta(seconds=20)
    min_batch_volume: int = Field(default=100, ge=0)


# The causes recovery resends as they are (``failures``); Literal[tuple] is Literal[a, b, ...].
RetryCause = Literal[RETRYABLE_CAUSES]


class ChunkingSpec(BaseModel):
    """How a record too large for one request is split into chunk requests and their answers merged.

    A record whose prompt is estimated over the context window (or whose request is over
    ``max_request_bytes``) is split at shard time; a request the API refuses as too long is split in
    recovery. Each chunk is the record with ``field`` holding one part of its text, sent through the
    same prompt; the record is published once every chunk has a valid answer, as ``merge`` combines them.

    :param field: the text field that is split; defaults to the spec's only text field.
    :param headings: a regular expression matching a heading line: the document is cut into sections
        at headings first, then paragraphs, lines, words. Empty: no sections.
    :param target_tokens: the size chunks are packed up to.
    :param max_tokens: the largest chunk; None: as large as fits the context window and
        ``max_request_bytes`` with the prompt around it.
    :param overlap_tokens: how much of the previous chunk's end each chunk repeats first.
    :param merge: ``package.module:function`` taking the chunks' answers (output model instances, in
        text order) and returning the record's one output.
    :param max_depth: how deep chunks may nest: 1 is a record's chunks, 2 a chunk the API still
        refused as too long split again in recovery, and so on; a request refused deeper is quarantined.
    """

    model_config = ConfigDict(extra="forbid")

    field: str | None = None
    headings: str | None = DEFAULT_HEADINGS
    target_tokens: int = Field(default=50_000, ge=100)
    max_tokens: int | None = Field(default=None, ge=100)
    overlap_tokens: int = Field(default=0, ge=0)
    merge: str
    max_depth: int = Field(default=3, ge=1, le=5)

    @field_validator("headings")
    @classmethod
    def _headings_compile(cls, value: str | None) -> str | None:
        if value:
            try:
                re.compile(value, re.MULTILINE)
            except re.error as error:
                raise ValueError(f"not a regular expression: {error}") from None
        return value or None

    @field_validator("merge")
    @classmethod
    def _merge_importable(cls, value: str) -> str:
        return _check_import_path(value, import_merge_rule, "package.module:function")

    @model_validator(mode="after")
    def _sizes_agree(self) -> ChunkingSpec:
        if self.max_tokens is not None and self.target_tokens > self.max_tokens:
            raise ValueError(f"target_tokens ({self.target_tokens}) is above max_tokens ({self.max_tokens})")
        if self.max_tokens is not None and self.overlap_tokens * 2 > self.max_tokens:
            raise ValueError(
                f"overlap_tokens ({self.overlap_tokens}) is over half of max_tokens ({self.max_tokens})"
            )
        return self

    def merge_rule(self) -> MergeRule:
        return import_merge_rule(self.merge)


@cache
def import_merge_rule(path: str) -> MergeRule:
    """The merge function named by ``module:function``."""
    module_name, _, attribute = path.partition(":")
    rule = getattr(importlib.import_module(module_name), attribute)
    if not callable(rule) or isinstance(rule, type):
        raise TypeError(f"{path} is a {type(rule).__name__}, not a function")
    return rule


class RecoverySpec(BaseModel):
    """How failed requests are resubmitted.

    :param max_rounds: recovery rounds after the first submission; a request is tried at most
        ``max_rounds + 1`` times.
    :param retry: the transient causes resubmitted as they are.
    :param repair_invalid_output: resubmit an invalid answer once with a strict JSON instruction.
    """

    model_config = ConfigDict(extra="forbid")

    max_rounds: int = Field(default=3, ge=0, le=10)
    retry: set[RetryCause] = Field(default_factory=lambda: set(RETRYABLE_CAUSES))
    repair_invalid_output: bool = True

    @model_validator(mode="before")
    @classmethod
    def _trim_is_retired(cls, data: Any) -> Any:
        if isinstance(data, dict) and "trim_oversized" in data:
            raise ValueError(
                "trim_oversized is retired: cutting the middle of a document silently lost what stood "
                "there. Remove it, and declare a chunking section to split oversized records instead"
            )
        return data


HEALTH_CAUSES = frozenset(RESULT_CAUSES)


class HealthThreshold(BaseModel):
    """Shares of a run's results (0..1) above which the run warns or fails."""

    model_config = ConfigDict(extra="forbid")

    warn: float | None = Field(default=None, ge=0, le=1)
    fail: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _warn_below_fail(self) -> HealthThreshold:
        if self.warn is not None and self.fail is not None and self.warn > self.fail:
            raise ValueError(f"warn ({self.warn}) is above fail ({self.fail})")
        return self


def _default_thresholds() -> dict[str, HealthThreshold]:
    return {
        cause: HealthThreshold(warn=warn, fail=fail)
        for cause, (warn, fail) in default_health_thresholds().items()
    }


class HealthSpec(BaseModel):
    """Thresholds per cause (a result class or an error kind) and how many past runs to compare with."""

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, HealthThreshold] = Field(default_factory=_default_thresholds)
    trailing_runs: int = Field(default=7, ge=1, le=90)

    @field_validator("thresholds")
    @classmethod
    def _known_causes(cls, value: dict[str, HealthThreshold]) -> dict[str, HealthThreshold]:
        unknown = sorted(set(value) - HEALTH_CAUSES)
        if unknown:
            raise ValueError(
                f"unknown cause(s) {', '.join(unknown)}; use one of {', '.join(sorted(HEALTH_CAUSES))}"
            )
        return value


class BudgetSpec(BaseModel):
    """A ceiling on the projected cost of one run.

    :param usd: the ceiling in US dollars.
    :param action: over it, ``fail`` stops the run before the bulk spend, ``warn`` logs and goes on,
        ``approve`` waits for a person to approve or reject in the Airflow UI.
    """

    model_config = ConfigDict(extra="forbid")

    usd: float = Field(gt=0)
    action: GateAction = "fail"


class ThinkingSpec(BaseModel):
    """Extended thinking for every request.

    :param type: ``disabled``, ``enabled`` (a manual ``budget_tokens``) or ``adaptive`` (the model
        decides, steered by ``effort``); which ones a model takes is in ``models.yaml``.
    :param budget_tokens: for ``enabled``: at least 1024 and under ``max_tokens``.
    :param effort: for ``adaptive``: sent as ``output_config.effort``.
    """

    model_config = ConfigDict(extra="forbid")

    type: ThinkingMode
    budget_tokens: int | None = Field(default=None, ge=1024)
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None

    @model_validator(mode="after")
    def _fields_match_type(self) -> ThinkingSpec:
        if (self.budget_tokens is not None) != (self.type is ThinkingMode.ENABLED):
            raise ValueError("budget_tokens is required with type enabled, and only there")
        if self.effort is not None and self.type is not ThinkingMode.ADAPTIVE:
            raise ValueError("effort goes with type adaptive")
        return self

    def params(self) -> dict[str, Any]:
        """The request's ``thinking`` param."""
        params: dict[str, Any] = {"type": self.type.value}
        if self.budget_tokens is not None:
            params["budget_tokens"] = self.budget_tokens
        return params


class WorkloadSpec(BaseModel):
    """One bulk Claude workload; README.md, "Workload specs", describes each field.

    Checks between fields (the business key against the input model, the templates against its
    fields, the shard target against the request limit) run on the whole model, in any field order.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    owner: str = "airflow"
    tags: list[str] = Field(default_factory=list)
    schedule: str | None = None
    input: InputSpec
    input_schema: str
    business_key: list[str] = Field(min_length=1)
    custom_id_prefix: str
    text_fields: list[str] = Field(min_length=1)
    stratify_by: str | None = None
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    context_window_tokens: int = Field(default=DEFAULT_CONTEXT_WINDOW_TOKENS, ge=1)
    max_request_bytes: ByteSize = Field(default=ByteSize(1_000_000), ge=1)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    thinking: ThinkingSpec | None = None
    prompt: PromptSpec
    output_schema: str
    structured_output: Literal["auto", "on", "off"] = "auto"
    sample: SampleSpec = Field(default_factory=SampleSpec)
    sharding: ShardingSpec = Field(default_factory=ShardingSpec)
    deadline: DeadlineSpec
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    recovery: RecoverySpec = Field(default_factory=RecoverySpec)
    chunking: ChunkingSpec | None = None
    prices: list[ModelPrice] = Field(default_factory=list)
    model_capabilities: list[ModelCapabilities] = Field(default_factory=list)
    health: HealthSpec = Field(default_factory=HealthSpec)
    budget: BudgetSpec | None = None

    _base_dir: Path = PrivateAttr()

    @field_validator("name")
    @classmethod
    def _name_is_an_identifier(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                "use lowercase letters, digits and underscores, starting with a letter (it names the DAG)"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _cron_or_preset(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("@") or len(value.split()) == 5):
            raise ValueError(f"{value!r} is neither a 5-field cron expression nor a preset like @daily")
        return value

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _importable(cls, value: str) -> str:
        return _check_import_path(value)

    @field_validator("custom_id_prefix")
    @classmethod
    def _prefix_fits(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value):
            raise ValueError(
                "1 to 24 letters, digits or underscores (custom_ids allow [a-zA-Z0-9_-], 64 at most)"
            )
        return value

    @field_validator("prompt")
    @classmethod
    def _templates_usable(cls, value: PromptSpec, info: ValidationInfo) -> PromptSpec:
        base_dir = _base_dir_of(info)
        system = _parse_template(base_dir, value.system, "system")
        if jinja2.meta.find_undeclared_variables(system):
            raise ValueError(
                "the system template must not use variables: it is the prefix every request shares "
                f"(found {', '.join(sorted(jinja2.meta.find_undeclared_variables(system)))})"
            )
        user = _parse_template(base_dir, value.user, "user")
        others = jinja2.meta.find_undeclared_variables(user) - {"record"}
        if others:
            raise ValueError(f"the user template may only use 'record', found {', '.join(sorted(others))}")
        return value

    @model_validator(mode="after")
    def _remember_base_dir(self, info: ValidationInfo) -> WorkloadSpec:
        self._base_dir = _base_dir_of(info)
        return self

    @model_validator(mode="after")
    def _fields_agree(self) -> WorkloadSpec:
        """The checks between fields, on the whole model: a field validator reading ``info.data`` sees
        only the fields declared before it, and silently skips the check when the order changes."""
        problems: list[str] = []

        def check(field: str, model_path: str, names: list[str], what: str) -> None:
            try:
                _require_fields(model_path, names, what)
            except ValueError as error:
                problems.append(f"{field}: {error}")

        check("business_key", self.input_schema, self.business_key, "business key field(s)")
        check("text_fields", self.input_schema, self.text_fields, "text field(s)")
        if self.stratify_by is not None:
            check("stratify_by", self.input_schema, [self.stratify_by], "stratify_by field")
        user = _parse_template(self._base_dir, self.prompt.user, "user")
        used = sorted(
            {n.attr for n in user.find_all(jinja2.nodes.Getattr) if getattr(n.node, "name", None) == "record"}
        )
        check("prompt", self.input_schema, used, "the user template reads record field(s)")
        for expectation in self.sample.expectations:
            check("sample", self.output_schema, [expectation.field], "expectation field")
            if expectation.equals_input_field is not None:
                check("sample", self.input_schema, [expectation.equals_input_field], "equals_input_field")
        if self.max_request_bytes > self.sharding.target_bytes:
            problems.append(
                f"sharding: target_bytes ({self.sharding.target_bytes}) is below max_request_bytes "
                f"({self.max_request_bytes}): a request of the allowed size would not fit in a shard"
            )
        if self.chunking is not None:
            if self.chunking.field is None:
                if len(self.text_fields) == 1:
                    self.chunking = self.chunking.model_copy(update={"field": self.text_fields[0]})
                else:
                    problems.append(
                        "chunking: name the text field to split (chunking.field), one of "
                        + ", ".join(self.text_fields)
                    )
            elif self.chunking.field not in self.text_fields:
                problems.append(
                    f"chunking: chunking.field {self.chunking.field!r} is not one of text_fields "
                    f"({', '.join(self.text_fields)})"
                )
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

    @model_validator(mode="after")
    def _model_accepts_the_request(self) -> WorkloadSpec:
        """What the model refuses with a 400 is refused here, naming the spec's field."""
        try:
            capabilities = self.capabilities()
        except UnknownModelError as error:
            raise ValueError(f"model: {error}") from None
        problems = []
        if self.max_tokens > capabilities.max_output_tokens:
            problems.append(
                f"max_tokens: {self.max_tokens} is over {self.model}'s maximum output of "
                f"{capabilities.max_output_tokens} tokens"
            )
        for parameter in ("temperature", "top_p", "top_k"):
            if getattr(self, parameter) is not None and parameter not in capabilities.sampling:
                problems.append(
                    f"{parameter}: {self.model} refuses a non-default {parameter} (the API answers 400); "
                    "remove it or choose a model that takes it"
                )
        if self.thinking is not None:
            if self.thinking.type not in capabilities.thinking:
                accepted = ", ".join(mode.value for mode in capabilities.thinking)
                problems.append(
                    f"thinking.type: {self.model} refuses thinking {self.thinking.type.value} "
                    f"(it takes: {accepted})"
                )
            if self.thinking.budget_tokens is not None and self.thinking.budget_tokens >= self.max_tokens:
                problems.append(
                    f"thinking.budget_tokens: {self.thinking.budget_tokens} must be under max_tokens "
                    f"{self.max_tokens}"
                )
        if self.structured_output == "on":
            if not capabilities.structured_outputs:
                problems.append(
                    f"structured_output: {self.model} does not take output_config.format; "
                    "use auto or off, or a model that does"
                )
            else:
                try:
                    structured_output_schema(self.output_model())
                except UnfitSchemaError as error:
                    problems.append(f"structured_output: {error}")
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

    @property
    def base_dir(self) -> Path:
        """The folder the prompt template paths are relative to (the spec file's folder)."""
        return self._base_dir

    def input_model(self) -> type[BaseModel]:
        """The pydantic model of one input record."""
        return import_model(self.input_schema)

    def output_model(self) -> type[BaseModel]:
        """The pydantic model the answer to one request must validate against."""
        return import_model(self.output_schema)

    def template_path(self, which: Literal["system", "user"]) -> Path:
        return self._base_dir / getattr(self.prompt, which)

    def run_date(self, logical_date: datetime) -> date:
        """See ``run_date_of``."""
        return run_date_of(logical_date)

    def deadline_for(self, logical_date: datetime) -> datetime:
        """See ``DeadlineSpec.deadline_for``."""
        return self.deadline.deadline_for(logical_date)

    def price_table(self) -> PriceTable:
        """The default prices with this spec's rows taking precedence."""
        return default_price_table().with_overrides(self.prices)

    def capability_table(self) -> CapabilityTable:
        """The default model capabilities with this spec's rows taking precedence."""
        return default_capability_table().with_overrides(self.model_capabilities)

    def capabilities(self) -> ModelCapabilities:
        """What this spec's model accepts."""
        return self.capability_table().for_model(self.model)

    def output_format_schema(self) -> dict[str, Any] | None:
        """The JSON schema sent as ``output_config.format``, or None when answers are free text.

        ``auto`` uses structured outputs when the model takes them and the output model fits;
        ``on`` was checked to do so when the spec was loaded; ``off`` never does.
        """
        if self.structured_output == "off" or not self.capabilities().structured_outputs:
            return None
        try:
            return structured_output_schema(self.output_model())
        except UnfitSchemaError:
            return None

    def request_options(self) -> dict[str, Any]:
        """The Messages API params beyond model, max_tokens, system and messages that every request carries."""
        options: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("temperature", "top_p", "top_k")
            if getattr(self, name) is not None
        }
        if self.thinking is not None:
            options["thinking"] = self.thinking.params()
        output_config: dict[str, Any] = {}
        if (schema := self.output_format_schema()) is not None:
            output_config["format"] = {"type": "json_schema", "schema": schema}
        if self.thinking is not None and self.thinking.effort is not None:
            output_config["effort"] = self.thinking.effort
        if output_config:
            options["output_config"] = output_config
        return options


def run_date_of(logical_date: datetime) -> date:
    """A run's date: Airflow's ``ds`` (the logical date's date in UTC), the date in custom_ids, run
    folders, the store and the uri's ``{ds}``. The DAG reads ``schedule`` in the deadline's zone, so
    the bundled 01:00 New York night (05:00 or 06:00 UTC) keeps its local date."""
    if logical_date.tzinfo is None:
        raise ValueError("logical_date must be timezone-aware")
    return logical_date.astimezone(UTC).date()


def _base_dir_of(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context["base_dir"]) if "base_dir" in context else WORKLOADS.default_dir()


def prompt_environment(base_dir: Path) -> SandboxedEnvironment:
    """The Jinja environment prompts render in: sandboxed (a template cannot reach Python's internals),
    strict (a typo is an error, not an empty string in a paid prompt), and escaping every value it
    inserts as XML text, so a record field cannot close the tag that wraps it in the prompt."""
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(base_dir), undefined=jinja2.StrictUndefined, autoescape=True
    )


def _unsafe_names(template: jinja2.nodes.Template) -> list[str]:
    """Names a prompt has no business using: attributes with a leading underscore, strings holding a
    dunder, the ``attr`` filter. The sandbox refuses them at render time too; here they fail the spec
    when it is loaded, before anything runs."""
    found = [node.attr for node in template.find_all(jinja2.nodes.Getattr) if node.attr.startswith("_")]
    found += [
        node.value
        for node in template.find_all(jinja2.nodes.Const)
        if isinstance(node.value, str) and "__" in node.value
    ]
    found += [f"|{node.name}" for node in template.find_all(jinja2.nodes.Filter) if node.name == "attr"]
    return found


def _parse_template(base_dir: Path, relative: str, which: str) -> jinja2.nodes.Template:
    path = base_dir / relative
    # Checked on the path as written, as Jinja's loader does: a folder the operator links in is theirs.
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise ValueError(f"{which} template {relative!r} must be a path inside the spec's folder {base_dir}")
    if not path.is_file():
        raise ValueError(f"{which} template {relative!r} not found in {base_dir}")
    try:
        parsed = prompt_environment(base_dir).parse(path.read_text(encoding="utf-8"))
    except jinja2.TemplateSyntaxError as error:
        raise ValueError(f"{which} template {relative!r} line {error.lineno}: {error.message}") from error
    unsafe = _unsafe_names(parsed)
    if unsafe:
        raise ValueError(
            f"{which} template {relative!r} uses {', '.join(sorted(set(unsafe)))}: a prompt may read the "
            "record's fields, never Python internals (names with underscores, the attr filter)"
        )
    return parsed


def _readable_problem(error: dict[str, Any]) -> str:
    where = ""
    for part in error["loc"]:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    message = error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    if error["type"] not in ("missing", "value_error") and not isinstance(shown, dict | list):
        message += f" (got {shown!r})"
    return f"{where}: {message}" if where else message


def parse_workload(data: Any, source: str = "<spec>", base_dir: Path | None = None) -> WorkloadSpec:
    """Validate an already-parsed spec mapping; ``base_dir`` is where its template paths start (by
    default the first registered spec folder)."""
    if not isinstance(data, dict):
        raise WorkloadSpecError(source, [f"the spec must be a mapping of fields, got {type(data).__name__}"])
    try:
        return WorkloadSpec.model_validate(data, context={"base_dir": base_dir or WORKLOADS.default_dir()})
    except ValidationError as error:
        raise WorkloadSpecError(source, [_readable_problem(e) for e in error.errors()]) from None


def spec_folders() -> list[Path]:
    """Where specs are looked up by name: the registered folders, then ``$CLAUDE_BATCH_SPECS_DIR`` if set."""
    folders = list(WORKLOADS.spec_dirs)
    if configured := os.environ.get(SPECS_DIR_VARIABLE):
        folders.append(Path(configured).resolve())
    return folders


def bundled_workload_names() -> list[str]:
    """Names of the specs in the registered folders (the workloads the deployment ships)."""
    return sorted(p.stem for folder in WORKLOADS.spec_dirs for p in folder.glob("*.yaml"))


def load_workload(name: str) -> WorkloadSpec:
    """A workload spec by name: ``<name>.yaml`` in a registered folder or the configured specs folder.

    A name is never a path: run-time callers pass names they read from XCom or a request, and only
    the folders an operator configured are ever read.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise WorkloadSpecError(
            repr(name)[:100],
            ["a spec is loaded by name (lowercase letters, digits, underscores), not a path"],
        )
    found = [folder / f"{name}.yaml" for folder in spec_folders() if (folder / f"{name}.yaml").is_file()]
    if not found:
        known = sorted({p.stem for folder in spec_folders() for p in folder.glob("*.yaml")})
        raise WorkloadSpecError(name, [f"no such workload; known: {', '.join(known)}"])
    if len(found) > 1:
        raise WorkloadSpecError(name, [f"defined twice ({found[0]}, {found[1]}); rename one"])
    return load_workload_file(found[0])


def load_workload_file(path: Path) -> WorkloadSpec:
    """A spec file given by its path, for the code that builds DAGs from files it trusts (and tests)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise WorkloadSpecError(str(path), [f"cannot read the file: {error}"]) from error
    except yaml.YAMLError as error:
        raise WorkloadSpecError(str(path), [f"not valid YAML: {error}"]) from error
    return parse_workload(data, str(path), path.resolve().parent)


def prompt_fingerprint(spec: WorkloadSpec) -> str:
    """A hash of everything that decides what the model answers: templates, model, max_tokens, schema,
    and the request options (structured outputs, sampling, thinking).

    Two runs with the same fingerprint send the same prompts to the same model for the same shape of
    answer, so a sample that passed for one vouches for the other (and may be smaller).
    """
    digest = hashlib.sha256()
    for part in (
        spec.template_path("system").read_text(encoding="utf-8"),
        spec.template_path("user").read_text(encoding="utf-8"),
        spec.model,
        str(spec.max_tokens),
        json.dumps(spec.output_model().model_json_schema(), sort_keys=True),
        json.dumps(spec.request_options(), sort_keys=True),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()
