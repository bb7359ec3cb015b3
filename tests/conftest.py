"""Suite-wide checks: every report.json any test writes follows the shipped JSON Schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mfvsdnn.experiment.results import Results, schema

SCHEMA = schema()


@pytest.fixture(autouse=True)
def every_report_follows_the_schema(monkeypatch):
    """Wrap ``Results.to_json`` (how every report.json is written) with a schema validation."""
    real = Results.to_json

    def validated(self: Results) -> str:
        text = real(self)
        jsonschema.validate(json.loads(text), SCHEMA)
        return text

    monkeypatch.setattr(Results, "to_json", validated)
