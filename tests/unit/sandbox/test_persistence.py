"""A sandbox with a state file forgets nothing when it restarts: logins, refresh tokens, posted
and removed transactions, scheduled faults, the day its data was made for."""

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from dashtam.sandbox.config import SandboxConfig

Sandbox = Any  # the conftest helper; not importable under importlib import mode
MakeSandbox = Callable[[SandboxConfig], Sandbox]
ACCOUNTS = "/trader/v1/accounts"


def _configs(make_config: Callable[..., SandboxConfig], tmp_path: Path) -> SandboxConfig:
    return make_config(state_file=tmp_path / "sandbox" / "state.json")


async def test_logins_and_tokens_outlive_a_restart(
    make_sandbox: MakeSandbox, make_config: Callable[..., SandboxConfig], tmp_path: Path
) -> None:
    config = _configs(make_config, tmp_path)
    tokens = await make_sandbox(config).login()

    restarted = make_sandbox(config)  # a new process reading the same file

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await restarted.http.get(ACCOUNTS, headers=bearer)).status_code == 200
    refreshed = await restarted.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] == tokens["refresh_token"]


async def test_the_file_holds_digests_never_a_token(
    make_sandbox: MakeSandbox, make_config: Callable[..., SandboxConfig], tmp_path: Path
) -> None:
    config = _configs(make_config, tmp_path)
    tokens = await make_sandbox(config).login()
    text = (tmp_path / "sandbox" / "state.json").read_text()
    for name in ("access_token", "refresh_token", "id_token"):
        assert tokens[name].rstrip("@") not in text
    assert (tmp_path / "sandbox" / "state.json").stat().st_mode & 0o077 == 0


async def test_a_revoked_login_stays_revoked(
    make_sandbox: MakeSandbox, make_config: Callable[..., SandboxConfig], tmp_path: Path
) -> None:
    config = _configs(make_config, tmp_path)
    first = make_sandbox(config)
    tokens = await first.login()
    await first.http.post("/sandbox/tokens/revoke")

    refreshed = await make_sandbox(config).refresh(tokens["refresh_token"])

    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


async def test_posted_and_removed_transactions_outlive_a_restart(
    make_sandbox: MakeSandbox, make_config: Callable[..., SandboxConfig], tmp_path: Path
) -> None:
    config = _configs(make_config, tmp_path)
    first = make_sandbox(config)
    [account, *_] = (await first.http.get("/sandbox/accounts")).json()
    posted, removed = account["pending"]
    base = f"/sandbox/accounts/{account['hashValue']}/transactions"
    assert (await first.http.post(f"{base}/{posted}/post")).status_code == 200
    assert (await first.http.delete(f"{base}/{removed}")).status_code == 200

    restarted = make_sandbox(config)

    [again, *_] = (await restarted.http.get("/sandbox/accounts")).json()
    assert again["pending"] == []
    trader = f"{ACCOUNTS}/{account['hashValue']}/transactions"
    bearer = await restarted.bearer()
    assert (await restarted.http.get(f"{trader}/{posted}", headers=bearer)).json()[
        "status"
    ] == "VALID"
    assert (await restarted.http.get(f"{trader}/{removed}", headers=bearer)).status_code == 404


async def test_scheduled_faults_outlive_a_restart(
    make_sandbox: MakeSandbox, make_config: Callable[..., SandboxConfig], tmp_path: Path
) -> None:
    config = _configs(make_config, tmp_path)
    first = make_sandbox(config)
    bearer = await first.bearer()
    await first.http.post("/sandbox/faults", json={"fault": "server_error", "count": 2})
    assert (await first.http.get(ACCOUNTS, headers=bearer)).status_code == 500

    restarted = make_sandbox(config)

    assert (await restarted.http.get("/sandbox/faults")).json() == {
        "trader": [{"fault": "server_error", "count": 1, "path": None, "skip": 0}],
        "token": [],
    }
    statuses = [(await restarted.http.get(ACCOUNTS, headers=bearer)).status_code for _ in "ab"]
    assert statuses == [500, 200]


async def test_a_restart_on_another_day_keeps_the_data_of_the_first(
    make_sandbox: MakeSandbox, make_config: Callable[..., SandboxConfig], tmp_path: Path
) -> None:
    """Data made for "today" would move every transaction by a day on each restart."""
    first = make_sandbox(make_config(reference_date=date(2024, 3, 1), state_file=None))
    state_file = tmp_path / "state.json"
    made_then = first.state.config.model_copy(update={"state_file": state_file})
    make_sandbox(made_then).state.save()
    today = made_then.model_copy(update={"reference_date": None})

    restarted = make_sandbox(today)

    assert restarted.state.data.reference.date() == date(2024, 3, 1)
    assert json.loads(state_file.read_text())["data"]["reference_date"] == "2024-03-01"


async def test_an_unreadable_file_starts_afresh(
    make_sandbox: MakeSandbox, make_config: Callable[..., SandboxConfig], tmp_path: Path
) -> None:
    config = _configs(make_config, tmp_path)
    config.state_file.parent.mkdir()  # type: ignore[union-attr]
    config.state_file.write_text("{not json")  # type: ignore[union-attr]

    sandbox = make_sandbox(config)

    assert (await sandbox.login())["access_token"]
    assert json.loads(config.state_file.read_text())["version"] == 1  # type: ignore[union-attr]
