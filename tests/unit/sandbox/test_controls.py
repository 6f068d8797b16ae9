"""Fault injection, stats and data controls that tests (in-process or not) drive."""

import asyncio
import time
from typing import Any

import pytest

from dashtam.sandbox.__main__ import main

Sandbox = Any  # the conftest helper; not importable under importlib import mode
ACCOUNTS = "/trader/v1/accounts"
RECENT = {
    "startDate": "2025-01-10T00:00:00.000Z",
    "endDate": "2025-01-15T00:00:00.000Z",
    "types": "TRADE,DIVIDEND_OR_INTEREST,ACH_RECEIPT,ACH_DISBURSEMENT,RECEIVE_AND_DELIVER,"
    "ELECTRONIC_FUND,WIRE_IN,WIRE_OUT,CASH_RECEIPT,CASH_DISBURSEMENT,JOURNAL,MONEY_MARKET,"
    "MEMORANDUM,MARGIN_CALL,SMA_ADJUSTMENT",
}


async def test_rate_limit_header_answers_429_with_retry_after(sandbox: Sandbox) -> None:
    headers = await sandbox.bearer() | {"X-Sandbox-Fault": "rate_limit"}

    response = await sandbox.http.get(ACCOUNTS, headers=headers)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert set(response.json()) == {"message", "errors"}


@pytest.mark.parametrize(("fault", "status"), [("server_error", 500), ("expired_token", 401)])
async def test_fault_header_overrides_a_valid_token(
    sandbox: Sandbox, fault: str, status: int
) -> None:
    headers = await sandbox.bearer()

    faulted = await sandbox.http.get(ACCOUNTS, headers=headers | {"X-Sandbox-Fault": fault})
    healthy = await sandbox.http.get(ACCOUNTS, headers=headers)

    assert faulted.status_code == status
    assert healthy.status_code == 200
    assert sandbox.state.stats.faults_injected == 1


async def test_slow_fault_delays_the_answer(sandbox: Sandbox) -> None:
    headers = await sandbox.bearer() | {"X-Sandbox-Fault": "slow:150"}
    started = time.perf_counter()

    response = await sandbox.http.get(ACCOUNTS, headers=headers)

    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.15


async def test_unknown_fault_header_is_a_bad_request(sandbox: Sandbox) -> None:
    headers = await sandbox.bearer() | {"X-Sandbox-Fault": "meteor"}

    response = await sandbox.http.get(ACCOUNTS, headers=headers)

    assert response.status_code == 400
    assert "Unknown fault" in response.json()["errors"][0]


async def test_scheduled_faults_hit_the_next_n_calls_only(sandbox: Sandbox) -> None:
    headers = await sandbox.bearer()

    scheduled = await sandbox.http.post("/sandbox/faults", json={"fault": "rate_limit", "count": 2})
    statuses = [(await sandbox.http.get(ACCOUNTS, headers=headers)).status_code for _ in range(3)]

    assert scheduled.status_code == 200
    assert statuses == [429, 429, 200]


async def test_an_aimed_fault_skips_then_hits_matching_paths_only(sandbox: Sandbox) -> None:
    headers = await sandbox.bearer()
    body = {"fault": "server_error", "count": 2, "path": f"{ACCOUNTS}/*/transactions", "skip": 1}
    await sandbox.http.post("/sandbox/faults", json=body)
    account = sandbox.state.data.accounts[0].hash_value

    def get(path: str) -> Any:
        return sandbox.http.get(path, headers=headers, params=RECENT)

    statuses = [
        (await get(path)).status_code
        for path in (ACCOUNTS, *[f"{ACCOUNTS}/{account}/transactions"] * 4, ACCOUNTS)
    ]

    assert statuses == [200, 200, 500, 500, 200, 200]


async def test_a_held_request_waits_until_released_and_is_then_answered(
    sandbox: Sandbox,
) -> None:
    headers = await sandbox.bearer()
    account = sandbox.state.data.accounts[1].hash_value
    path = f"{ACCOUNTS}/{account}/transactions"
    await sandbox.http.post("/sandbox/faults", json={"fault": "hold", "path": path})

    waiting = asyncio.create_task(sandbox.http.get(path, headers=headers, params=RECENT))
    while not (held := (await sandbox.http.get("/sandbox/faults/held")).json()):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert not waiting.done()
    released = await sandbox.http.post("/sandbox/faults/release")
    answer = await waiting

    assert held[0]["path"] == path
    assert "startDate=2025-01-10" in held[0]["query"]
    assert released.json() == {"released": 1}
    assert answer.status_code == 200
    [logged] = (await sandbox.http.get("/sandbox/requests")).json()
    assert logged == {
        "account_hash": account,
        "start": "2025-01-10T00:00:00+00:00",
        "end": "2025-01-15T00:00:00+00:00",
        "rows": len(answer.json()),
    }


async def test_scheduled_fault_can_target_the_token_endpoint(sandbox: Sandbox) -> None:
    tokens = await sandbox.login()
    body = {"fault": "server_error", "count": 1, "target": "token"}
    await sandbox.http.post("/sandbox/faults", json=body)

    failed = await sandbox.refresh(tokens["refresh_token"])
    retried = await sandbox.refresh(tokens["refresh_token"])

    assert failed.status_code == 500
    assert failed.json()["error"] == "server_error"
    assert retried.status_code == 200
    assert sandbox.state.stats.refresh_grants == 1


async def test_cleared_faults_no_longer_fire(sandbox: Sandbox) -> None:
    headers = await sandbox.bearer()
    await sandbox.http.post("/sandbox/faults", json={"fault": "server_error", "count": 5})

    await sandbox.http.delete("/sandbox/faults")

    assert (await sandbox.http.get(ACCOUNTS, headers=headers)).status_code == 200


async def test_bad_scheduled_fault_is_rejected(sandbox: Sandbox) -> None:
    response = await sandbox.http.post("/sandbox/faults", json={"fault": "slow:soon"})

    assert response.status_code == 400


async def test_configured_rate_limit_every_nth_call(make_sandbox, make_config) -> None:
    sandbox = make_sandbox(make_config(fault_rate_limit_every=3))
    headers = await sandbox.bearer()

    statuses = [(await sandbox.http.get(ACCOUNTS, headers=headers)).status_code for _ in range(6)]

    assert statuses == [200, 200, 429, 200, 200, 429]


async def test_stats_endpoint_reports_and_resets(sandbox: Sandbox) -> None:
    tokens = await sandbox.login()
    await sandbox.refresh(tokens["refresh_token"])
    await sandbox.refresh("not-a-token")

    stats = (await sandbox.http.get("/sandbox/stats")).json()
    reset = (await sandbox.http.post("/sandbox/reset-stats")).json()

    assert stats["token_requests"] == 3
    assert stats["authorization_code_grants"] == 1
    assert stats["refresh_grants"] == 1
    assert stats["token_errors"] == 1
    assert stats["authorizations_approved"] == 1
    assert set(reset.values()) == {0}
    assert sandbox.state.stats.token_requests == 0


async def test_pending_transaction_posts_then_disappears(sandbox: Sandbox) -> None:
    listing = (await sandbox.http.get("/sandbox/accounts")).json()
    account_hash, pending = listing[0]["hashValue"], listing[0]["pending"]
    assert len(pending) == 2
    path = f"/trader/v1/accounts/{account_hash}/transactions"
    headers = await sandbox.bearer()

    async def status_of(activity_id: int) -> str | None:
        found = (await sandbox.http.get(path, params=RECENT, headers=headers)).json()
        return next((t["status"] for t in found if t["activityId"] == activity_id), None)

    assert await status_of(pending[0]) == "PENDING"
    control = f"/sandbox/accounts/{account_hash}/transactions/{pending[0]}"
    posted = await sandbox.http.post(f"{control}/post")
    assert posted.status_code == 200
    assert await status_of(pending[0]) == "VALID"

    assert (await sandbox.http.delete(control)).status_code == 200
    assert await status_of(pending[0]) is None
    assert (await sandbox.http.delete(control)).status_code == 404
    assert (await sandbox.http.get("/sandbox/accounts")).json()[0]["pending"] == pending[1:]


def test_cli_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    assert "--port" in capsys.readouterr().out
