"""JSON:API error documents shaped like Klaviyo's.

`{"errors": [{id, status, code, title, detail, source, links, meta}]}`.

The OpenAPI schema lists only id, code, title, detail and source, but live responses also carry an integer
`status`, `links` and `meta`; the simulator sends all of them so clients learn to tolerate extra keys.
"""

from __future__ import annotations

import uuid
from typing import Any

# Short standard titles per status (Klaviyo's API is built on Django REST Framework and uses its wording).
TITLES = {
    400: "Invalid input.",
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflict.",
    415: "Unsupported media type.",
    429: "Request was throttled.",
    500: "A server error occurred.",
    502: "Bad gateway.",
    503: "Service unavailable.",
    504: "Gateway timeout.",
}

CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    415: "unsupported_media_type",
    429: "throttled",
    500: "error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

RATE_LIMIT_DOCS_URL = "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling#rate-limits"


def error_document(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    pointer: str | None = None,
    parameter: str | None = None,
    links: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build a JSON:API error document with one error.

    Args:
        status: HTTP status code.
        detail: Human-readable explanation specific to this request.
        code: Machine-readable code; defaults to the usual code for the status.
        title: Short summary; defaults to the usual title for the status.
        pointer: JSON pointer into the request body that caused the error.
        parameter: Query parameter or header that caused the error.
        links: Extra links (Klaviyo links rate-limit errors to its docs).

    Returns:
        The error document.
    """
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    return {
        "errors": [
            {
                "id": str(uuid.uuid4()),
                "status": status,
                "code": code or CODES.get(status, "error"),
                "title": title or TITLES.get(status, "Error."),
                "detail": detail,
                "source": source,
                "links": links or {},
                "meta": {},
            }
        ]
    }


def throttled_document(retry_after: int | None) -> dict[str, Any]:
    """The body of a 429 response.

    Args:
        retry_after: Seconds until the request may succeed (the `Retry-After` value); `None` when not known.

    Returns:
        The error document.
    """
    unit = "second" if retry_after == 1 else "seconds"
    expected = f" Expected available in {retry_after} {unit}." if retry_after is not None else ""
    return error_document(
        429,
        f"Request was throttled.{expected}",
        pointer="/data",
        links={"type": RATE_LIMIT_DOCS_URL},
    )


class ApiError(Exception):
    """Raised by request handlers to answer with a JSON:API error.

    Args:
        status: HTTP status code.
        detail: Human-readable explanation.
        code: Machine-readable code (defaults per status).
        title: Short summary (defaults per status).
        pointer: JSON pointer into the request body.
        parameter: Offending query parameter or header.
        headers: Extra response headers (e.g. `Allow` for 405).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        title: str | None = None,
        pointer: str | None = None,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.title = title
        self.pointer = pointer
        self.parameter = parameter
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        """The JSON:API error document for this error."""
        return error_document(
            self.status, self.detail, code=self.code, title=self.title, pointer=self.pointer, parameter=self.parameter
        )


def invalid(detail: str, *, pointer: str | None = None, parameter: str | None = None) -> ApiError:
    """Shorthand for a 400 `invalid` error.

    Args:
        detail: What is wrong.
        pointer: JSON pointer into the body.
        parameter: Offending query parameter.

    Returns:
        The error, ready to raise.
    """
    return ApiError(400, detail, pointer=pointer, parameter=parameter)
