"""The simulator serving several Klaviyo accounts, one per key, over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from klaviyo_simulator.accounts import ACCOUNT_TIMEZONES, derived_key, numbered_configs
from segment_pipeline.klaviyo import ApiKey, DayWindow, KlaviyoAuthError, KlaviyoClient, KlaviyoSettings
from segment_pipeline.klaviyo.limits import (
    ACCOUNTS_PATH,
    API_REVISION,
    JSON_API_MEDIA_TYPE,
    SEGMENT_SERIES_PATH,
    SEGMENTS_PATH,
)

TODAY = dt.date(2025, 6, 15)
FAST = 1_000_000.0
# east of UTC by 10 hours or more, west of it, and UTC itself
ACCOUNTS = {
    "sydney": {"api_key": "key-sydney", "seed": 11, "timezone": "Australia/Sydney"},
    "pacific": {"api_key": "key-pacific", "seed": 12, "timezone": "US/Pacific"},
    "london": {"api_key": "key-london", "seed": 13, "timezone": "Europe/London"},
}


@pytest.fixture
def sim(make_simulator) -> KlaviyoSimulator:
    return make_simulator(accounts=ACCOUNTS, segment_count=12, speed=FAST, today=TODAY)


def client_for(sim: KlaviyoSimulator, key: str) -> KlaviyoClient:
    settings = KlaviyoSettings(api_key=ApiKey(key), base_url=sim.base_url, max_attempts=1, timeout_seconds=10)
    return KlaviyoClient(settings, sleep=lambda seconds: None)


def report(sim: KlaviyoSimulator, key: str) -> httpx.Response:
    segment_id = sim.accounts[key].account.segments[0].id
    body = {
        "data": {
            "type": "segment-series-report",
            "attributes": {
                "statistics": ["total_members"],
                "timeframe": {"start": f"{TODAY}T00:00:00+00:00", "end": f"{TODAY}T00:00:00+00:00"},
                "interval": "daily",
                "filter": f'any(segment_id,["{segment_id}"])',
            },
        }
    }
    headers = {
        "Authorization": f"Klaviyo-API-Key {key}",
        "revision": API_REVISION,
        "Content-Type": JSON_API_MEDIA_TYPE,
        "Accept": JSON_API_MEDIA_TYPE,
    }
    return httpx.post(sim.base_url + SEGMENT_SERIES_PATH, json=body, headers=headers, timeout=10)


def test_each_key_sees_its_own_account_timezone_and_segments(sim):
    seen_ids: set[str] = set()
    for name, settings in ACCOUNTS.items():
        served = sim.accounts[name]
        with client_for(sim, settings["api_key"]) as client:
            account = client.get_account()
            segments = client.list_segments()
        assert (account.id, account.timezone) == (served.account_id, settings["timezone"])
        assert [s["id"] for s in segments] == [s.id for s in served.account.segments]
        assert not seen_ids & {s["id"] for s in segments}  # different seeds, different segments
        seen_ids |= {s["id"] for s in segments}
    # the series are each account's own days: the reported day is the account-local one
    window = DayWindow(TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=1))
    with client_for(sim, "key-sydney") as client:
        segment_id = sim.accounts["sydney"].account.segments[0].id
        body = client.query_segment_series((segment_id,), window, "Australia/Sydney")
    assert body["data"]["attributes"]["date_times"][0].startswith(f"{window.start}T00:00:00+10:00")


def test_accounts_are_found_by_name_id_or_key_and_the_single_account_api_stays(sim, make_simulator):
    sydney = sim.accounts["sydney"]
    assert sim.accounts[sydney.account_id] is sydney and sim.accounts["key-sydney"] is sydney
    assert sim.account is sydney.account and sim.config is sydney.config and sim.rate_limits is sydney.rate_limits
    assert sim.accounts.names == ["sydney", "pacific", "london"] and len(sim.accounts) == 3
    with pytest.raises(KeyError, match="sydney, pacific, london"):
        sim.accounts["nobody"]
    single = make_simulator()
    (only,) = single.accounts
    assert only.name == single.account.account_id and only.account is single.account


def test_accounts_may_not_share_a_key_an_id_or_a_name():
    with pytest.raises(ValueError, match="same API key"):
        KlaviyoSimulator(
            accounts={"a": SimulatorConfig(api_key="k", seed=1), "b": SimulatorConfig(api_key="k", seed=2)}
        )
    with pytest.raises(ValueError, match="both called"):
        KlaviyoSimulator(accounts=[SimulatorConfig(api_key="k1", seed=1), SimulatorConfig(api_key="k2", seed=1)])
    with pytest.raises(ValueError, match="not both"):
        KlaviyoSimulator(SimulatorConfig(), accounts=[SimulatorConfig()])
    with pytest.raises(ValueError, match="at least one"):
        KlaviyoSimulator(accounts=[])


def test_one_accounts_spent_quota_and_busy_second_leave_the_others_alone(make_simulator):
    # real-time windows: the burst limit (1 report a second) is per account
    sim = make_simulator(accounts=ACCOUNTS, segment_count=3, today=TODAY)
    assert report(sim, "key-sydney").status_code == 200
    assert report(sim, "key-sydney").status_code == 429
    assert report(sim, "key-pacific").status_code == 200
    sim.exhaust_report_quota("london")
    spent = report(sim, "key-london")
    assert spent.status_code == 429 and int(spent.headers["Retry-After"]) > 3600
    usage = sim.stats()["accounts"]
    assert usage["sydney"]["rate_limit_usage"]["reports"]["second"] == 1
    assert usage["pacific"]["rate_limit_usage"]["reports"]["day"] == 1
    assert usage["london"]["rate_limit_usage"]["reports"]["day"] == 225


def test_a_key_revoked_mid_run_gets_401_from_then_on_and_only_that_account(sim):
    with client_for(sim, "key-pacific") as pacific, client_for(sim, "key-sydney") as sydney:
        pages = pacific.iter_segment_pages()
        assert len(next(pages)) == 10
        sim.revoke_key("pacific")
        with pytest.raises(KlaviyoAuthError, match="401"):
            next(pages)
        with pytest.raises(KlaviyoAuthError):
            pacific.get_account()
        assert len(sydney.list_segments()) == 12
        # the admin endpoint does the same, for a simulator in another process
        revoked = httpx.post(sim.base_url + "/__simulator/accounts/sydney/revoke-key").json()
        assert revoked["key_revoked"] is True
        with pytest.raises(KlaviyoAuthError):
            sydney.get_account()
        restored = httpx.post(sim.base_url + "/__simulator/accounts/pacific/restore-key").json()
        assert restored["key_revoked"] is False and pacific.get_account().timezone == "US/Pacific"
    with client_for(sim, "key-london") as london:
        assert london.get_account().timezone == "Europe/London"
    assert sim.count(path=SEGMENTS_PATH, status=401, account="pacific") == 1
    assert sim.count(path=ACCOUNTS_PATH, status=401, account="sydney") == 1


def test_the_log_and_stats_say_which_account_without_the_key(sim):
    with client_for(sim, "key-london") as london, client_for(sim, "key-sydney") as sydney:
        london.get_account()
        sydney.list_segments()
    with client_for(sim, "not-a-key") as stranger, pytest.raises(KlaviyoAuthError):
        stranger.get_account()
    assert [entry.account for entry in sim.requests] == ["london", "sydney", "sydney", None]
    assert sim.count(account="sydney") == 2 and sim.count(account="london") == 1
    stats = sim.stats()
    assert stats["requests_by_path"][ACCOUNTS_PATH] == {"200": 1, "401": 1}
    assert stats["accounts"]["london"]["requests_by_path"] == {ACCOUNTS_PATH: {"200": 1}}
    assert stats["accounts"]["sydney"]["requests_by_path"] == {SEGMENTS_PATH: {"200": 2}}
    assert stats["accounts"]["pacific"]["requests_by_path"] == {}
    assert stats["accounts"]["sydney"]["timezone"] == "Australia/Sydney" and "account_id" not in stats
    listed = httpx.get(sim.base_url + "/__simulator/accounts").json()
    assert [account["name"] for account in listed["accounts"]] == ["sydney", "pacific", "london"]
    text = json.dumps(stats) + json.dumps(listed) + repr(sim.requests) + repr(list(sim.accounts))
    assert "key-" not in text


def test_the_admin_truth_and_edit_endpoints_take_an_account(sim):
    served = sim.accounts["pacific"]
    segment = served.account.segments[0]
    params = {"segment_id": segment.id, "start": "2025-06-01", "end": "2025-06-02"}
    truth = httpx.get(sim.base_url + "/__simulator/truth/series", params={**params, "account": "pacific"}).json()
    expected = served.account.series(segment.id, dt.date(2025, 6, 1), dt.date(2025, 6, 2))
    assert truth["timezone"] == "US/Pacific"
    assert truth["series"] == [{**row, "date": row["date"].isoformat()} for row in expected]
    # without `account` the first account answers, which has no such segment
    assert httpx.get(sim.base_url + "/__simulator/truth/series", params=params).status_code == 404
    edited = httpx.post(sim.base_url + f"/__simulator/segments/{segment.id}/edit", params={"account": "pacific"})
    assert edited.status_code == 200 and served.account.segment(segment.id).edits == 1
    missing = httpx.post(sim.base_url + "/__simulator/accounts/nobody/revoke-key")
    assert missing.status_code == 404 and "sydney" in missing.json()["error"]


def test_numbered_accounts_have_their_own_keys_seeds_and_timezones():
    configs = numbered_configs(SimulatorConfig(api_key="base", seed=5, timezone="US/Eastern"), 3)
    assert list(configs) == ["account_1", "account_2", "account_3"]
    assert [c.api_key for c in configs.values()] == ["base-1", "base-2", "base-3"]
    assert [c.seed for c in configs.values()] == [5, 6, 7]
    assert [c.timezone for c in configs.values()] == ["US/Eastern", *ACCOUNT_TIMEZONES[1:3]]
    assert len({c.account_id for c in configs.values()}) == 3
    with pytest.raises(ValueError):
        numbered_configs(SimulatorConfig(), 0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_accounts_n_serves_derived_keys_and_prints_how_to_form_them_not_them():
    port = _free_port()
    env = {**os.environ, "KLAVIYO_API_KEY": "cli-secret-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "klaviyo_simulator", "serve", "--port", str(port), "--segments", "3", "--accounts", "3"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(4)]
        assert f"http://127.0.0.1:{port}" in lines[0] and "3 accounts" in lines[0]
        assert "account_2" in lines[2] and "Australia/Sydney" in lines[2] and "${KLAVIYO_API_KEY}-2" in lines[2]
        timezones = []
        for index in (1, 2, 3):
            response = httpx.get(
                f"http://127.0.0.1:{port}{ACCOUNTS_PATH}",
                headers={
                    "Authorization": f"Klaviyo-API-Key {derived_key('cli-secret-key', index)}",
                    "revision": API_REVISION,
                },
            )
            timezones.append(response.json()["data"][0]["attributes"]["timezone"])
        assert timezones == ["US/Eastern", "Australia/Sydney", "US/Pacific"]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "cli-secret-key" not in "".join(lines) + out + err
