"""`GET /openapi.json` matches the routes: schemathesis generates requests from it (valid and
invalid ones) against the app on a real Redis. No request may produce a 5xx, every response
must have a documented status and match its documented schema, and inputs the document
calls invalid must be refused with a 4xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import negative_data_rejection

from app import create_app

KEY = "schema-test-key-0123456789"


@pytest.fixture
def api(build, open_service):
    service = open_service(build(server={"api_key": KEY}))
    # 413 is as clear a refusal of an oversized invalid body as 400
    config = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": [400, 401, 404, 405, 409, 413, 415]}}})
    return schemathesis.openapi.from_wsgi("/openapi.json", create_app(deps=service), config=config)


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_every_route_answers_as_documented(case):
    response = case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"},  # raises on a failed check
                                      checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                              response_schema_conformance, negative_data_rejection])
    assert response.status_code < 500, response.text


def test_the_document_lists_every_route(build, open_service):
    app = create_app(deps=open_service(build()))
    documented = {(path.replace("{item_id}", "<path:item_id>").replace("{user_id}", "<path:user_id>"), method.upper())
                  for path, ops in app.test_client().get("/openapi.json").get_json()["paths"].items() for method in ops}
    routed = {(rule.rule, method) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed
