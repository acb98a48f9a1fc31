"""Contract checks against Klaviyo's own OpenAPI document, for the simulator's responses and our client's requests.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import referencing
import referencing.jsonschema
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator, oas30_format_checker

SPEC_ENV = "KLAVIYO_OPENAPI_SPEC"
DEFAULT_SPEC_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "klaviyo" / "openapi-segments.json"
SKIP_MESSAGE = (
    "Klaviyo's OpenAPI document is not available: set KLAVIYO_OPENAPI_SPEC to the path of Klaviyo's OpenAPI "
    "document (openapi-segments.json) to run this test"
)
# The document is registered under this URI so the spec's own "#/components/..." references resolve in it.
_SPEC_URI = "https://contract.invalid/klaviyo/openapi-segments.json"
_JSON_MEDIA_TYPES = ("application/vnd.api+json", "application/json")


class ContractError(AssertionError):
    """A request or response does not match Klaviyo's OpenAPI document."""


def spec_path() -> Path:
    """Where the OpenAPI document is expected: `$KLAVIYO_OPENAPI_SPEC` or the shared default."""
    configured = os.environ.get(SPEC_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_SPEC_PATH


@dataclass(frozen=True)
class _Operation:
    template: str
    method: str
    pointer: str
    definition: Mapping[str, Any]


class Contract:
    """Klaviyo's OpenAPI document, indexed for validation.

    Args:
        spec: The parsed OpenAPI 3.0 document.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        resource = referencing.Resource(contents=spec, specification=referencing.jsonschema.DRAFT4)
        self.registry: referencing.Registry = referencing.Registry().with_resource(_SPEC_URI, resource)
        self._paths: list[tuple[re.Pattern[str], str]] = []
        for template in spec.get("paths", {}):
            pattern = "".join(
                "[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]+\})", template)
            )
            self._paths.append((re.compile(pattern), template))

    def template_for(self, path: str) -> str | None:
        """The spec path template a concrete path matches, e.g. "/api/segments/{id}", or `None`."""
        for pattern, template in self._paths:
            if pattern.fullmatch(path):
                return template
        return None

    def operation(self, method: str, path: str) -> _Operation | None:
        """The operation for a concrete method and path, or `None` when the spec has none."""
        template = self.template_for(path)
        if template is None:
            return None
        definition = self.spec["paths"][template].get(method.lower())
        if not isinstance(definition, Mapping):
            return None
        return _Operation(template, method.lower(), f"/paths/{_escape(template)}/{method.lower()}", definition)

    def resolve(self, pointer: str) -> tuple[str, Any]:
        """Follow `$ref`s from a JSON pointer; return the final pointer and the object there."""
        node: Any = self.spec
        for part in pointer.lstrip("/").split("/") if pointer.strip("/") else []:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        while isinstance(node, Mapping) and "$ref" in node:
            pointer = node["$ref"].split("#", 1)[1]
            node = self.resolve(pointer)[1]
        return pointer, node

    @functools.lru_cache(maxsize=256)  # noqa: B019 - contracts live for the whole session anyway
    def _validator(self, schema_pointer: str) -> Any:
        reference = f"{_SPEC_URI}#{quote(schema_pointer, safe='/~')}"
        return OAS30Validator({"$ref": reference}, registry=self.registry, format_checker=oas30_format_checker)

    def errors(self, schema_pointer: str, instance: Any) -> list[str]:
        """Validate `instance` against the schema at `schema_pointer`; return readable problems (empty if valid)."""
        found = list(self._validator(schema_pointer).iter_errors(instance))
        if not found:
            return []
        best = best_match(found)
        location = "/" + "/".join(str(p) for p in best.absolute_path)
        problems = [f"at {location}: {best.message}"]
        for error in found:
            if error is not best:
                problems.append(f"at /{'/'.join(str(p) for p in error.absolute_path)}: {_short(error.message)}")
        return problems


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _response_schema_pointer(contract: Contract, response_pointer: str) -> str | None:
    pointer, response = contract.resolve(response_pointer)
    content = response.get("content") or {}
    for media_type in _JSON_MEDIA_TYPES:
        if media_type in content and "schema" in content[media_type]:
            return f"{pointer}/content/{_escape(media_type)}/schema"
    return None


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Check a response body against the spec's response for that operation and status.

    The status picks the response by exact code, then the `4XX`/`5XX` range, then `default`. Error responses to
    paths or methods the spec doesn't have (404, 405) are checked against the spec's generic
    `ClientError`/`ServerError` responses.

    Args:
        method: HTTP method of the request.
        path: Concrete request path, e.g. "/api/segments/AbC123".
        status: Response status code.
        body: Parsed JSON body (or `None`).

    Raises:
        ContractError: If the spec has no such response or the body doesn't match its schema.
    """
    contract = require_contract()
    operation = contract.operation(method, path)
    if operation is None:
        if status < 400:
            raise ContractError(f"{method} {path} answered {status}, but the spec has no such operation")
        generic = "ClientError" if status < 500 else "ServerError"
        response_pointer = f"/components/responses/{generic}"
        label = f"{method} {path} {status} (generic {generic})"
    else:
        responses = operation.definition.get("responses", {})
        key = next((k for k in (str(status), f"{status // 100}XX", "default") if k in responses), None)
        if key is None:
            raise ContractError(f"{method} {operation.template}: status {status} is not a documented response")
        response_pointer = f"{operation.pointer}/responses/{key}"
        label = f"{method} {operation.template} {status} (response {key})"
    schema_pointer = _response_schema_pointer(contract, response_pointer)
    if schema_pointer is None:
        if body not in (None, b"", ""):
            raise ContractError(f"{label}: the spec defines no JSON body, but one was sent")
        return
    problems = contract.errors(schema_pointer, body)
    if problems:
        raise ContractError(f"{label} does not match the spec:\n  " + "\n  ".join(problems))


def _coerce(value: str, schema: Mapping[str, Any], explode: bool) -> Any:
    kind = schema.get("type")
    if kind == "array":
        item_schema = schema.get("items", {})
        parts = value.split(",") if not explode else [value]
        return [_coerce(part, item_schema, True) for part in parts]
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value  # left as a string so the schema reports the wrong type
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def validate_request(
    method: str,
    path: str,
    query: Mapping[str, Any],
    headers: Mapping[str, str],
    body: Any,
) -> None:
    """Check a request against the spec: operation, header and query parameters, request body.

    Args:
        method: HTTP method.
        path: Concrete path without the query string.
        query: Query parameters; a value may be a string or a list of strings (repeated parameter).
        headers: Request headers (matched case-insensitively).
        body: Parsed JSON body, or `None`.

    Raises:
        ContractError: Listing every mismatch found.
    """
    contract = require_contract()
    operation = contract.operation(method, path)
    if operation is None:
        raise ContractError(f"{method} {path}: the spec has no such operation")
    label = f"{method} {operation.template}"
    problems: list[str] = []
    lowered = {name.lower(): value for name, value in headers.items()}
    parameters = list(enumerate(operation.definition.get("parameters", [])))
    known_query = {p["name"]: (i, p) for i, p in parameters if p.get("in") == "query"}

    for index, parameter in parameters:
        location, name = parameter.get("in"), parameter["name"]
        schema_pointer = f"{operation.pointer}/parameters/{index}/schema"
        if location == "header":
            value = lowered.get(name.lower())
            if value is None:
                if parameter.get("required"):
                    problems.append(f"required header '{name}' is missing")
                continue
            problems += [f"header '{name}': {p}" for p in contract.errors(schema_pointer, value)]
        elif location == "query" and parameter.get("required") and name not in query:
            problems.append(f"required query parameter '{name}' is missing")

    for name, raw in query.items():
        if name not in known_query:
            problems.append(f"query parameter '{name}' is not defined for this operation")
            continue
        index, parameter = known_query[name]
        _, schema = contract.resolve(f"{operation.pointer}/parameters/{index}/schema")
        explode = parameter.get("explode", parameter.get("style", "form") == "form")
        for value in raw if isinstance(raw, list) else [raw]:
            coerced = _coerce(str(value), schema, explode)
            for problem in contract.errors(f"{operation.pointer}/parameters/{index}/schema", coerced):
                problems.append(f"query parameter '{name}'={value!r}: {problem}")

    request_body = operation.definition.get("requestBody")
    if request_body is None:
        if body is not None:
            problems.append("a body was sent, but the operation takes none")
    elif body is None:
        if request_body.get("required"):
            problems.append("the request body is required")
    else:
        content = request_body.get("content", {})
        media_type = next((m for m in _JSON_MEDIA_TYPES if m in content), None)
        if media_type is None:
            problems.append("the operation's request body is not JSON")
        else:
            schema_pointer = f"{operation.pointer}/requestBody/content/{_escape(media_type)}/schema"
            problems += [f"body: {p}" for p in contract.errors(schema_pointer, body)]

    if problems:
        raise ContractError(f"{label} request does not match the spec:\n  " + "\n  ".join(problems))
