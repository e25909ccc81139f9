"""The API fuzzed from its own OpenAPI schema: whatever arrives, never a 5xx."""
from __future__ import annotations

import time

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.risk_api.helpers import TOKEN, Api

EXAMPLES_PER_MODE = 8
TIME_BUDGET_S = 150


def test_openapi_schema_is_served(api: Api) -> None:
    paths = api.http.get("/openapi.json").json()["paths"]
    for path in ("/verification/l1", "/customers/{customer_id}/decisions",
                 "/customers/{customer_id}/actions/{action}", "/handoffs", "/reviews"):
        assert path in paths


def test_fuzzing_from_the_schema_finds_no_server_error(api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    real_customer = api.take_clean()["customer_id"]
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        has_customer = any(p.name == "customer_id" for p in operation.path_parameters)
        variants = [(GenerationMode.POSITIVE, {}), (GenerationMode.NEGATIVE, {})]
        if has_customer:
            variants.append((GenerationMode.POSITIVE, {"customer_id": real_customer}))
        for mode, fixed in variants:
            strategy = operation.as_strategy(mode, path_parameters=fixed or None)
            assert time.monotonic() - started < TIME_BUDGET_S, "fuzzing ran over its budget"

            @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def no_server_error(case: schemathesis.Case) -> None:
                response = case.call(base_url=api.base_url,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path}: {response.status_code} "
                    f"{response.text[:300]}")

            try:
                no_server_error()
            except Unsatisfiable:
                # Operations without any input (GET /health) have no invalid request to make.
                assert mode is GenerationMode.NEGATIVE, operation.label
