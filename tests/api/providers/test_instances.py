"""Provider instances: the catalog, create/list/get/rename/delete, and ownership."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import signup_and_login
from tests.support.providers import API, ProviderFlow


async def test_catalog_lists_schwab_through_the_sandbox(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(f"{API}/providers/types", headers=headers)
    assert response.status_code == 200
    (schwab,) = response.json()
    assert schwab == {
        "key": "schwab",
        "name": "Charles Schwab",
        "auth_type": "oauth2",
        "configured": True,
        "mode": "sandbox",
        "pkce": True,
    }


async def test_create_starts_pending_and_lists(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await client.post(
        f"{API}/providers", json={"provider_key": "schwab", "alias": "  IRA  "}, headers=headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["alias"], body["status"], body["provider_key"]) == ("IRA", "pending", "schwab")
    listed = await client.get(f"{API}/providers", headers=headers)
    assert [item["id"] for item in listed.json()] == [body["id"]]
    fetched = await client.get(f"{API}/providers/{body['id']}", headers=headers)
    assert fetched.json() == body


async def test_alias_is_unique_per_user(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str]
) -> None:
    await flow.create(headers, "Brokerage")
    again = await client.post(
        f"{API}/providers", json={"provider_key": "schwab", "alias": "Brokerage"}, headers=headers
    )
    assert again.status_code == 409
    assert again.json()["type"].endswith("alias_taken")
    other = await signup_and_login(client)
    assert (await flow.create(other, "Brokerage")) != ""


async def test_unknown_provider_type_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(
        f"{API}/providers", json={"provider_key": "fidelity", "alias": "x"}, headers=headers
    )
    assert response.status_code == 422
    assert "schwab" in response.json()["detail"]


async def test_rename_and_rename_conflict(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str]
) -> None:
    first = await flow.create(headers, "One")
    await flow.create(headers, "Two")
    renamed = await client.patch(f"{API}/providers/{first}", json={"alias": "Uno"}, headers=headers)
    assert renamed.status_code == 200
    assert renamed.json()["alias"] == "Uno"
    clash = await client.patch(f"{API}/providers/{first}", json={"alias": "Two"}, headers=headers)
    assert clash.status_code == 409


async def test_delete_removes_the_instance_but_keeps_its_audit_rows(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str], session: AsyncSession
) -> None:
    provider_id = await flow.create(headers)
    deleted = await client.delete(f"{API}/providers/{provider_id}", headers=headers)
    assert deleted.status_code == 204
    assert (await client.get(f"{API}/providers/{provider_id}", headers=headers)).status_code == 404
    actions = await session.scalars(
        text("SELECT action FROM provider_audit_logs WHERE provider_id = :id ORDER BY created_at"),
        {"id": provider_id},
    )
    assert list(actions) == ["provider_created", "provider_deleted"]


async def test_another_users_provider_is_not_found(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str]
) -> None:
    provider_id = await flow.create(headers)
    stranger = await signup_and_login(client)
    for method, path in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/authorization"),
        ("POST", "/authorization"),
        ("POST", "/authorization/refresh"),
        ("DELETE", "/authorization"),
        ("GET", "/audit-logs"),
    ]:
        response = await client.request(
            method,
            f"{API}/providers/{provider_id}{path}",
            headers=stranger,
            json={"alias": "mine now"} if method == "PATCH" else None,
        )
        assert response.status_code == 404, (method, path, response.text)
    assert (await client.get(f"{API}/providers/{provider_id}", headers=headers)).status_code == 200


async def test_provider_routes_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{API}/providers")).status_code == 401
    assert (await client.get(f"{API}/providers/types")).status_code == 401
