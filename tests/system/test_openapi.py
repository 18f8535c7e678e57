from __future__ import annotations

import json
from pathlib import Path

import yaml

from service.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_yaml_equals_the_generated_schema() -> None:
    committed = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    generated = json.loads(json.dumps(create_app().openapi()))
    assert committed == generated, "run: uv run personalize openapi --output openapi.yaml"


def test_every_operation_documents_problem_errors() -> None:
    schema = create_app().openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {c: r for c, r in operation["responses"].items() if c[0] in "45"}
            assert errors, f"{method.upper()} {path} documents no error response"
            for code, response in errors.items():
                assert "application/problem+json" in response["content"], (method, path, code)
