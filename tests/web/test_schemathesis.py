"""Schemathesis against the OpenAPI document at /api: every operation, a fixed seed and example budget.

Each documented operation gets generated requests (positive: valid by the document; negative:
each parameter or the body broken on purpose) sent to the Flask app in process. The checks: no
server error (5xx other than the documented 503), and every response's status code, content type
and body as the document declares them. schemathesis' own pytest plugin is not used (its
parametrization does not work with pytest 9), so the operations are listed from the document and
each one is driven with Hypothesis here.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from geo.auth import make_entry, new_token
from web import create_app

SEED = 20210107
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TOKEN = new_token()


def _document_and_operations() -> tuple[dict, list[tuple[str, str, bool]]]:
    """The document and (method, path, takes input) of every operation schemathesis drives.

    Loading the document needs no database, so the list is known at collection time.
    schemathesis leaves out the path it loaded the document from (/api itself).
    """
    app = create_app({"TESTING": True, "DATABASE_URL": "postgresql://unused/unused"})
    doc = app.test_client().get("/api").get_json()
    schema = schemathesis.openapi.from_wsgi("/api", app)
    ops = []
    for result in schema.get_all_operations():
        op = result.ok()
        spec = doc["paths"][op.path][op.method.lower()]
        ops.append((op.method.upper(), op.path, _negatable(doc, spec)))
    return doc, ops


def _negatable(doc: dict, spec: dict) -> bool:
    """Whether some input can be broken: a body, or a parameter whose schema is more than any string."""
    params = [doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
              for p in spec.get("parameters", [])]
    return "requestBody" in spec or any(p["schema"] != {"type": "string"} for p in params)


DOCUMENT, OPERATIONS = _document_and_operations()
WRITE = ("POST", "/api/calls")
# Negative cases need something to break: operations whose only input is free text get positive ones only.
READ_CASES = [pytest.param(m, p, mode, id=f"{m} {p} {mode}") for m, p, negatable in OPERATIONS if (m, p) != WRITE
              for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if negatable or mode.is_positive]


def _run(app, method: str, path: str, mode: GenerationMode, headers: dict | None = None) -> int:
    """Drive one operation with up to `EXAMPLES[mode]` generated requests; returns how many were sent."""
    schema = schemathesis.openapi.from_wsgi("/api", app)
    op = next(o.ok() for o in schema.get_all_operations() if o.ok().method.upper() == method and o.ok().path == path)
    sent = []

    @seed(SEED)
    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def check(case):
        if headers:
            case.headers = {**(case.headers or {}), **headers}
        response = case.call_and_validate(checks=CHECKS)
        sent.append(response.status_code)

    check()
    return len(sent)


@pytest.mark.parametrize("method, path, mode", READ_CASES)
def test_read_operation(app, method, path, mode):
    # Operations without input have fewer distinct requests than the budget; Hypothesis stops early.
    assert _run(app, method, path, mode) >= 1


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_post_calls(writable_url, mode):
    app = create_app({"DATABASE_URL": writable_url, "TESTING": True, "API_TOKENS": make_entry("fuzz", TOKEN).entry()})
    assert _run(app, "POST", "/api/calls", mode, {"Authorization": f"Bearer {TOKEN}"}) >= EXAMPLES[mode] // 2


def test_every_operation_is_driven():
    """Every documented operation but /api itself is driven (a new route is fuzzed without a change here)."""
    documented = {(m.upper(), p) for p, item in DOCUMENT["paths"].items() for m in item}
    assert documented - {(m, p) for m, p, _ in OPERATIONS} == {("GET", "/api")}
    assert WRITE in {(m, p) for m, p, _ in OPERATIONS} and len(READ_CASES) >= 40
