"""Schemathesis over every operation of Hearth's own /openapi.json, with valid and invalid
inputs, straight through the ASGI app on the fake engine: no input is a 5xx (nor a bug the
server only logs, behind a stream's 200), every 4xx body is in its route's error shape, and
the app still serves once the run is over.

Examples per operation come from the active hypothesis profile: a few hundred in all in the
suite, many thousands under `make fuzz` (`--hypothesis-profile fuzz`)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, CheckContext, CheckFunction, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup

from tests.api.conftest import FAKE_ID, chat_body
from tests.errorshape import error_fields

Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]

# A loopback server answers only to its own names (api/security.py's Host check).
HOST = "localhost"
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# About how many operations the document has: they share the profile's max_examples.
OPERATIONS = 40

# What is left out, and why; everything else is fuzzed in both modes.
SKIPPED: dict[str, tuple[GenerationMode, ...]] = {
    # It downloads from the Hugging Face hub or any URL: the network, not this server.
    "POST /api/pull": MODES,
    # A valid body may name the fixture's model: its file deleted, later examples mean nothing.
    "DELETE /api/delete": (GenerationMode.POSITIVE,),
}

# Bodies whose `model` is one to change, not one to run: never pointed at the fixture's.
_NAMES_A_MODEL_TO_CHANGE = {"DELETE /api/delete", "POST /api/create"}


def examples_per_run() -> int:
    """Per operation and mode, from the profile's max_examples (200 by default, 5000 fuzzing)."""
    return max(3, settings().max_examples // OPERATIONS)


# The suite's 300 s limit is for one test; this one is every operation's, so it scales with
# the examples (a second per operation and example: ten times what a 2-core machine takes).
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(max(300, examples_per_run() * OPERATIONS))]


def can_be_invalid(operation: Operation) -> bool:
    """Whether there is an invalid input to generate: a path of plain strings or a body of
    any bytes has none."""
    json_body = any(body.media_type == "application/json" for body in operation.body)
    return json_body or bool(operation.query) or bool(operation.headers)


def error_shape(ctx: CheckContext, response: Response, case: AnyCase) -> bool | None:
    """A 4xx body is JSON in the error shape of the route the request reached."""
    if 400 <= response.status_code < 500 and case.method.upper() != "HEAD":
        path = unquote(urlsplit(response.request.url).path)
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), content_type
        error_fields(json.loads(response.content), path)
    return None


def existing(schema: schemathesis.BaseSchema) -> dict[str, str]:
    """Path parameters naming things that exist: a conversation with an item, and a stored
    response (made anew for each operation, as one may have deleted them)."""

    def made(path: str, body: dict[str, Any]) -> Any:
        r = schema[path]["POST"].Case(body=body).call()
        assert r.status_code == 200, r.text
        return r.json()

    hi = {"type": "message", "role": "user", "content": "hi"}
    conversation = made("/v1/conversations", {"items": [hi]})
    listing = schema["/v1/conversations/{conversation_id}/items"]["GET"]
    items = listing.Case(path_parameters={"conversation_id": conversation["id"]}).call()
    (item,) = items.json()["data"]
    response = made("/v1/responses", {"model": FAKE_ID, "input": "hi", "max_output_tokens": 3})
    return {
        "conversation_id": conversation["id"],
        "item_id": item["id"],
        "response_id": response["id"],
    }


def toward_the_fixture(ids: dict[str, str]) -> Callable[[AnyCase], AnyCase]:
    """The case naming the fixture's model and things that exist, so that its valid inputs
    get past "not found" into translation, the pipeline and the store."""

    def point(case: AnyCase) -> AnyCase:
        if isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = FAKE_ID
        for name in set(case.path_parameters or {}) & set(ids):
            assert case.path_parameters is not None
            case.path_parameters[name] = ids[name]
        return case

    return point


def fuzz(operation: Operation, mode: GenerationMode, checks: list[CheckFunction]) -> None:
    strategy = operation.as_strategy(generation_mode=mode)
    if operation.label not in _NAMES_A_MODEL_TO_CHANGE:
        point = toward_the_fixture(existing(operation.schema))
        strategy = st.one_of(strategy, strategy.map(point))

    @settings(
        max_examples=examples_per_run(),
        # Every operation's inner test has the same source digest: a saved example would be
        # replayed (and then dropped) by the wrong operation.
        database=None,
        # Big request schemas (chat, responses) are slow to draw from, and their invalid
        # bodies are drawn by filtering.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=strategy)
    def run(case: AnyCase) -> None:
        case.call_and_validate(checks=checks)

    run()


def test_no_input_is_a_server_error(
    make_app: Callable[..., FastAPI], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    # Started (lifespan) on this first request; the schemathesis plugin stops it after the test.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"host": HOST})
    schema.config.update(base_url=f"http://{HOST}")
    # No secrets here, and a reproduction should show `max_tokens`, not "[Filtered]".
    schema.config.output.sanitization.update(enabled=False)
    operations = [op for path in schema for op in schema[path].values()]
    assert len(operations) > OPERATIONS // 2

    statuses: Counter[tuple[str, int]] = Counter()

    def count(ctx: CheckContext, response: Response, case: AnyCase) -> None:
        statuses[(case.operation.label, response.status_code // 100)] += 1

    checks: list[CheckFunction] = [not_a_server_error, error_shape, count]
    failures = []
    for operation in operations:
        for mode in MODES:
            if mode in SKIPPED.get(operation.label, ()):
                continue
            if mode is GenerationMode.NEGATIVE and not can_be_invalid(operation):
                continue
            # Every operation is run, and all that failed are reported (a check's failures
            # come as a FailureGroup, which is a BaseExceptionGroup).
            try:
                fuzz(operation, mode, checks)
            except (Exception, FailureGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")

    # A bug behind a stream's 200 is only logged (the client gets an error event): none was.
    for record in caplog.records:
        if record.levelno >= logging.ERROR and record.name.startswith("hearth"):
            failures.append(f"logged: {record.getMessage()}\n{record.exc_text or ''}")

    # The app still serves: health, and a chat completion on the fixture's model.
    health = schema["/health"]["GET"].Case().call()
    if health.status_code != 200:
        failures.append(f"afterwards GET /health: {health.status_code} {health.text}")
    answer = schema["/v1/chat/completions"]["POST"].Case(body=chat_body(max_tokens=3)).call()
    if answer.status_code != 200 or not answer.json()["choices"][0]["message"]["content"]:
        failures.append(f"afterwards a chat completion: {answer.status_code} {answer.text}")

    by_class: Counter[str] = Counter()
    for (_, kind), n in statuses.items():
        by_class[f"{kind}xx"] += n
    print(
        f"\n{sum(statuses.values())} calls over {len(operations)} operations "
        f"({examples_per_run()} examples per operation and mode): {dict(by_class)}"
    )
    assert not failures, "\n\n".join(failures)
    # Every operation but those left out altogether was called.
    left_out = {label for label, modes in SKIPPED.items() if set(modes) == set(MODES)}
    assert {label for label, _ in statuses} == {op.label for op in operations} - left_out
