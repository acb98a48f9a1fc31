"""The contract checker itself: it must pass what Klaviyo accepts and catch what Klaviyo would refuse."""

import pytest

from segment_pipeline.klaviyo.limits import API_REVISION, SEGMENT_SERIES_PATH, SEGMENTS_PATH
from tests.openapi_contract import ContractError, validate_request, validate_response

HEADERS = {"revision": API_REVISION, "Authorization": "Klaviyo-API-Key REDACTED"}
SERIES_BODY = {
    "data": {
        "type": "segment-series-report",
        "attributes": {
            "statistics": ["total_members"],
            "timeframe": {"start": "2026-01-01T00:00:00-05:00", "end": "2026-01-31T00:00:00-05:00"},
            "interval": "daily",
            "filter": 'any(segment_id,["abc"])',
        },
    }
}


def test_a_well_formed_exchange_passes(openapi_contract):
    validate_request("GET", SEGMENTS_PATH, {"page[size]": "10"}, HEADERS, None)
    validate_request("POST", SEGMENT_SERIES_PATH, {}, HEADERS, SERIES_BODY)
    validate_response("GET", "/api/nowhere", 404, {"errors": [{"id": "1", "code": "c", "title": "t", "detail": "d"}]})


@pytest.mark.parametrize(
    ("query", "headers", "body", "problem"),
    [
        ({"page[size]": "11"}, HEADERS, None, "greater than the maximum of 10"),
        ({"bogus": "1"}, HEADERS, None, "'bogus' is not defined"),
        ({}, {"Authorization": "Klaviyo-API-Key REDACTED"}, None, "required header 'revision'"),
        ({}, {"revision": API_REVISION}, None, "Security"),
        ({}, HEADERS, {"data": {}}, "takes none"),
    ],
)
def test_a_request_klaviyo_would_refuse_is_caught(openapi_contract, query, headers, body, problem):
    with pytest.raises(ContractError, match=problem):
        validate_request("GET", SEGMENTS_PATH, query, headers, body)


def test_a_report_body_without_statistics_is_caught(openapi_contract):
    body = {
        "data": {"type": "segment-series-report", "attributes": {"timeframe": {"key": "today"}, "interval": "daily"}}
    }
    with pytest.raises(ContractError, match="'statistics' is a required property"):
        validate_request("POST", SEGMENT_SERIES_PATH, {}, HEADERS, body)


def test_an_error_body_without_its_required_fields_is_caught(openapi_contract):
    with pytest.raises(ContractError, match="'detail' is a required property"):
        validate_response("GET", SEGMENTS_PATH, 400, {"errors": [{"id": "1", "code": "c", "title": "t"}]})
    with pytest.raises(ContractError, match="required property"):
        validate_response("GET", "/api/nowhere", 404, {"message": "not found"})
