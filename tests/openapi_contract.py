"""Contract checks against Klaviyo's own OpenAPI document, for the simulator's responses and our client's requests.

openapi-core does the validation (operations, parameters, security, bodies, responses by status and range).
Three checks it does not make are added here: a query parameter the operation does not define is an error (Klaviyo
answers 400 to one), a required header must be sent even when its schema has a default (openapi-core would fill
it in), and an error answer to a path the spec lacks (404, 405) must still be a JSON:API error body.

The document is not vendored into the project. Point `KLAVIYO_OPENAPI_SPEC` at a copy of Klaviyo's
`openapi-segments.json` (default: `<repo>/../shared/klaviyo/openapi-segments.json`); without it the contract
checks skip and everything else still runs.

    from tests.openapi_contract import validate_request, validate_response

    validate_response("GET", "/api/segments", 200, body)          # raises ContractError on a mismatch
    validate_request("POST", "/api/segment-series-reports", {}, {"revision": "2026-07-15"}, body)
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import ImmutableMultiDict

SPEC_ENV = "KLAVIYO_OPENAPI_SPEC"
DEFAULT_SPEC_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "klaviyo" / "openapi-segments.json"
SKIP_MESSAGE = (
    "Klaviyo's OpenAPI document is not available: set KLAVIYO_OPENAPI_SPEC to the path of Klaviyo's OpenAPI "
    "document (openapi-segments.json) to run this test"
)
_MEDIA_TYPE = "application/vnd.api+json"


class ContractError(AssertionError):
    """A request or response does not match Klaviyo's OpenAPI document."""


def spec_path() -> Path:
    """Where the OpenAPI document is expected: `$KLAVIYO_OPENAPI_SPEC` or the shared default."""
    configured = os.environ.get(SPEC_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_SPEC_PATH


def _describe(error: Exception) -> str:
    """openapi-core's message plus the schema errors behind it (its own text names only the first level)."""
    cause = error.__cause__
    details = [str(e.message) for e in getattr(cause, "schema_errors", None) or []]
    text = str(error) if not cause or str(cause) in str(error) else f"{error}: {cause}"
    return f"{text} ({'; '.join(details)})" if details else text


class Contract:
    """Klaviyo's OpenAPI document, ready to validate exchanges.

    Args:
        spec: The parsed OpenAPI 3.0 document.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.api = OpenAPI.from_dict(dict(spec))
        self.host_url = spec["servers"][0]["url"]
        self._paths = [
            (
                re.compile(
                    "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in re.split(r"(\{[^}]+\})", t))
                ),
                t,
            )
            for t in spec.get("paths", {})
        ]

    def template_for(self, path: str) -> str | None:
        """The spec path template a concrete path matches, e.g. "/api/segments/{id}", or `None`."""
        return next((template for pattern, template in self._paths if pattern.fullmatch(path)), None)

    def operation(self, method: str, path: str) -> Mapping[str, Any] | None:
        template = self.template_for(path)
        return self.spec["paths"][template].get(method.lower()) if template else None

    def request(self, method: str, path: str, query: Mapping[str, Any], headers: Mapping[str, str], body: Any):
        pairs = [(name, str(v)) for name, raw in query.items() for v in (raw if isinstance(raw, list) else [raw])]
        return MockRequest(
            self.host_url,
            method.lower(),
            path,
            args=ImmutableMultiDict(pairs),
            headers=dict(headers),
            data=json.dumps(body).encode() if body is not None else None,
            content_type=_MEDIA_TYPE,
        )

    def generic_error_problems(self, status: int, body: Any) -> list[str]:
        """An error to a path or method the spec lacks, checked against its generic ClientError/ServerError."""
        name = "ClientError" if status < 500 else "ServerError"
        schema = self.spec["components"]["responses"][name]["content"][_MEDIA_TYPE]["schema"]
        # the schema is inline (no $ref), so it validates on its own
        validator = OAS30Validator(schema)
        return [f"(generic {name}) {error.message}" for error in validator.iter_errors(body)]


@functools.lru_cache(maxsize=4)
def _load(path: str) -> Contract | None:
    file = Path(path)
    if not file.is_file():
        return None
    with file.open(encoding="utf-8") as handle:
        return Contract(json.load(handle))


def load_contract() -> Contract | None:
    """The parsed contract, or `None` when the OpenAPI document is not available."""
    return _load(str(spec_path()))


def require_contract() -> Contract:
    """The parsed contract; skips the calling test when the OpenAPI document is not available."""
    contract = load_contract()
    if contract is None:
        pytest.skip(SKIP_MESSAGE)
    return contract


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Check a response body against the spec's response for that operation and status.

    Raises:
        ContractError: If the spec has no such response or the body doesn't match its schema.
    """
    contract = require_contract()
    if contract.operation(method, path) is None:
        if status < 400:
            raise ContractError(f"{method} {path} answered {status}, but the spec has no such operation")
        problems = contract.generic_error_problems(status, body)
    else:
        request = contract.request(method, path, {}, {}, None)
        response = MockResponse(json.dumps(body).encode(), status, content_type=_MEDIA_TYPE)
        problems = [_describe(error) for error in contract.api.iter_response_errors(request, response)]
    if problems:
        raise ContractError(f"{method} {path} {status} does not match the spec:\n  " + "\n  ".join(problems))


def validate_request(method: str, path: str, query: Mapping[str, Any], headers: Mapping[str, str], body: Any) -> None:
    """Check a request against the spec: operation, security, header and query parameters, request body.

    Raises:
        ContractError: Listing every mismatch found.
    """
    contract = require_contract()
    operation = contract.operation(method, path)
    if operation is None:
        raise ContractError(f"{method} {path}: the spec has no such operation")
    parameters = operation.get("parameters", [])
    known = {p["name"] for p in parameters if p.get("in") == "query"}
    problems = [f"query parameter '{name}' is not defined for this operation" for name in query if name not in known]
    # openapi-core fills a missing required header from its schema default (`revision` has one); Klaviyo does not
    sent = {name.lower() for name in headers}
    problems += [
        f"required header '{p['name']}' is missing"
        for p in parameters
        if p.get("in") == "header" and p.get("required") and p["name"].lower() not in sent
    ]
    if body is not None and "requestBody" not in operation:
        problems.append("a body was sent, but the operation takes none")
    request = contract.request(method, path, query, headers, body)
    problems += [_describe(error) for error in contract.api.iter_request_errors(request)]
    if problems:
        raise ContractError(f"{method} {path} request does not match the spec:\n  " + "\n  ".join(problems))
