"""A local, faithful Claude API (Messages + Message Batches) with fault injection.

The pipeline, the demo, the tests and the benchmarks talk to it through the official ``anthropic``
SDK exactly as they talk to the real API; only the base URL differs. Start it with the
``claude-emulator`` console script (see :mod:`claude_emulator.cli`), or from a test with
:func:`claude_emulator.testing.running_emulator`.

Modules, from the wire inwards:

- ``app``: the FastAPI application (endpoints, auth, error bodies, HTTP faults, connection faults).
- ``wire``: pydantic models of every body the emulator sends, as in Anthropic's OpenAPI spec.
- ``batch_body``: a streaming parser of the batch-create body (256 MB never held as Python objects).
- ``emulator``: the batch lifecycle on the emulator's clock and the processing of requests.
- ``state``: the SQLite state (batches, requests, results, submission counters, prompt cache).
- ``params``: validation of Messages API parameters; ``tokens``: models, token counting, caching.
- ``responders``: the deterministic "model": the responders a registry names, and a default.
- ``faults``: the fault file format and the seeded decisions; ``clock``: the emulator's clock.
"""
