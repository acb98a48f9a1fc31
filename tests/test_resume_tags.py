"""The resume sensor reads what a cut-short run was tagged with; tags can be edited in the UI, so each value is
bounded and a value no run writes is named, not a crash."""

import datetime as dt

import pytest

from segment_pipeline.defs.ingest.resume_sensor import _checked_tags
from segment_pipeline.defs.ingest.series_results import KLAVIYO_ACCOUNT_TAG, RANGE_TAG, RESUME_AT_TAG

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
WRITTEN = {
    RANGE_TAG: "2026-10-01..2026-11-30",
    RESUME_AT_TAG: "2026-12-07T18:00:00+00:00",
    KLAVIYO_ACCOUNT_TAG: "AbC123",
}


def test_the_tags_a_run_writes_are_read_back():
    first, last, resume_at, account_id = _checked_tags(WRITTEN, NOW)
    assert (first, last, account_id) == ("2026-10-01", "2026-11-30", "AbC123")
    assert resume_at == dt.datetime(2026, 12, 7, 18, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("tag", "value", "says"),
    [
        (RANGE_TAG, "yesterday..today", "is not a range of days"),
        (RANGE_TAG, "2026-11-30..2026-10-01", "ends before it starts"),
        (KLAVIYO_ACCOUNT_TAG, "../../etc", "is not a Klaviyo account id"),
    ],
)
def test_a_value_no_run_writes_is_refused_naming_the_tag(tag, value, says):
    with pytest.raises(ValueError, match=says) as refused:
        _checked_tags({**WRITTEN, tag: value}, NOW)
    assert tag in str(refused.value)


@pytest.mark.parametrize(
    "value", ["soon", "2026-12-07T18:00:00", "3170900-01-01T00:00:00+00:00", "2027-12-07T18:00:00+00:00"]
)
def test_a_resume_time_no_run_writes_is_due_now_and_the_budget_decides(value):
    assert _checked_tags({**WRITTEN, RESUME_AT_TAG: value}, NOW)[2] == NOW
