"""Hostile input, generated: schemathesis reads /api/v1/openapi.json from the
Flask app (WSGI, no network) and sends every operation requests built from the
document, valid ones and deliberately invalid ones. Every answer must be a
documented status with a body that matches the document, and never a 5xx.

The suite sends GRIDFLOW_FUZZ_EXAMPLES examples per operation and mode (small by
default, for CI's time); `bench/schemathesis_run.py` runs the same test with
enough examples for ≥ 10,000 requests and prints the counts.
"""
from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.helpers import REPORT

EXAMPLES = int(os.environ.get("GRIDFLOW_FUZZ_EXAMPLES", "40"))
REPORT_FILE = os.environ.get("GRIDFLOW_FUZZ_REPORT")
GRID = "linxi-xinguang-g1"
USER = "lx_wgz1"   # a grid leader: has tasks in the inbox, may start cases, may complete tasks



# `positive_data_acceptance` expects every schema-valid request to succeed; here a valid-looking
# request is still refused for what a schema cannot say (a grid or process that does not exist,
# a file whose content is not an image or PDF, a wrong password), with a documented 400/401.
EXCLUDED = [positive_data_acceptance]


def _schema_and_token(app, service):
    """The document as the app serves it, a token, and real ids for the path parameters:
    a case with an open task in USER's inbox and an attachment of USER's."""
    view = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    client = app.test_client()
    r = client.post("/api/v1/auth/token", json={"username": USER, "password": "demo123"})
    assert r.status_code == 200
    token = r.get_json()["token"]
    from tests.test_api_client import tiny_png
    import io
    r = client.post("/api/v1/attachments", headers={"Authorization": f"Bearer {token}"},
                    data={"file": (io.BytesIO(tiny_png()), "photo.png")})
    assert r.status_code == 201
    real = {"task_id": view.open_items[0].id, "ref": view.business_key, "attachment_id": r.get_json()[0]["id"]}
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app), token, real


def _unsendable_extras(case, operation) -> bool:
    """A negative case whose extra query parameter has no value on the wire (`{"": []}`:
    an empty list sends nothing) is, as sent, a valid request; with the token this harness
    always adds (its other invalid part, a missing Authorization, is undone), it is rightly
    answered 200, and schemathesis would report the server for accepting it."""
    known = {p.name for p in operation.query}
    return any(name not in known and value in ([], None) for name, value in (case.query or {}).items())


def fuzz(schema, token: str, examples: int, sent: Counter, real: dict | None = None) -> list[str]:
    """Every operation, valid and invalid data, `examples` generated cases each; operations
    with path parameters once more with the real ids in the path (the rest generated).
    Returns one report per (operation, mode) that failed a check."""
    headers = {"Authorization": f"Bearer {token}"}
    failures = []
    runs = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            runs.append((operation, mode, None))
        names = {p.name for p in operation.path_parameters}
        if real and names and names <= set(real):
            runs.append((operation, GenerationMode.POSITIVE, {n: real[n] for n in names}))
    for operation, mode, path_parameters in runs:
        if True:
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
            @settings(max_examples=examples, deadline=None, database=None, derandomize=not os.environ.get("GRIDFLOW_FUZZ_RANDOM"),
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
            def check(case):
                if mode is GenerationMode.NEGATIVE and _unsendable_extras(case, operation):
                    reject()
                response = case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)
                sent[f"{operation.method.upper()} {operation.path} {response.status_code}"] += 1
                assert response.status_code < 500, response.text[:500]

            try:
                check()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation tried, all reported
                label = f"{mode.value}, real ids" if path_parameters else mode.value
                failures.append(f"{operation.method.upper()} {operation.path} [{label}]: {exc}")
    return failures


@pytest.mark.slow
@pytest.mark.postgresql_run_only   # once, against the production database (tests/conftest.py)
def test_api_answers_every_generated_request_as_documented(app, service):
    schema, token, real = _schema_and_token(app, service)
    sent: Counter = Counter()
    failures = fuzz(schema, token, EXAMPLES, sent, real)
    if REPORT_FILE:
        with open(REPORT_FILE, "a", encoding="utf-8") as out:
            out.write(json.dumps({"requests": dict(sent), "failures": failures}) + "\n")
    assert not failures, "\n\n".join(failures)
    operations = {" ".join(k.split()[:2]) for k in sent}
    assert len(operations) == sum(1 for _ in schema.get_all_operations()), operations
    assert sum(sent.values()) >= EXAMPLES  # requests were really sent


# ------------------------------------------------------------------ what the fuzzing found, pinned

def test_unknown_inbox_query_parameters_are_refused(client):
    """A misspelt filter must not return the unfiltered inbox (found by schemathesis: `?=false`)."""
    token = client.post("/api/v1/auth/token", json={"username": USER, "password": "demo123"}).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}", "Accept-Language": "en"}
    for query in ({"overdu": "1"}, {"": "false"}):
        r = client.get("/api/v1/tasks", headers=headers, query_string=query)
        assert r.status_code == 400 and r.get_json()["error"] == "invalid", r.get_data(as_text=True)
        assert list(r.get_json()["fields"]) == [name or "_schema" for name in query]
    assert client.get("/api/v1/tasks", headers=headers, query_string={"overdue": "1"}).status_code == 200


def test_documents_the_content_types_a_download_can_have(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    content = spec["paths"]["/api/v1/attachments/{attachment_id}"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"}
    upload = spec["paths"]["/api/v1/attachments"]["post"]["requestBody"]["content"]["multipart/form-data"]
    file_schema = upload["schema"]
    if "$ref" in file_schema:
        file_schema = spec["components"]["schemas"][file_schema["$ref"].rsplit("/", 1)[-1]]
    assert file_schema["properties"]["file"]["minItems"] == 1 and file_schema["properties"]["file"]["maxItems"] == 10
