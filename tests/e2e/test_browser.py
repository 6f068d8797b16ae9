"""A person in a real browser (headless Debian chromium via Playwright): open the authorization
URL, press Allow or Deny on the sandbox's consent page, land on the callback server's page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, async_playwright
from tests.e2e.conftest import Stack
from tests.support.providers import API

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _authorization_url(api: httpx.AsyncClient, headers: dict[str, str], alias: str) -> str:
    created = await api.post(
        f"{API}/providers", json={"provider_key": "schwab", "alias": alias}, headers=headers
    )
    assert created.status_code == 201, created.text
    started = await api.post(
        f"{API}/providers/{created.json()['id']}/authorization", headers=headers
    )
    assert started.status_code == 200, started.text
    return str(started.json()["authorization_url"])


@pytest.mark.parametrize(
    ("button", "title", "message"),
    [
        ("#approve", "Connected", "is connected"),
        ("#deny", "Connection failed", "You declined access"),
    ],
)
async def test_consent_in_a_browser_ends_on_the_callback_page(
    stack: Stack,
    api: httpx.AsyncClient,
    user_headers: dict[str, str],
    browser: Browser,
    button: str,
    title: str,
    message: str,
) -> None:
    url = await _authorization_url(api, user_headers, f"Browser {button}")
    page = await browser.new_page()
    await page.goto(url)
    assert "Authorize Dashtam" in await page.title()
    await page.click(button)
    await page.wait_for_url(f"{stack.callback_url}/callback?**")
    assert await page.text_content("#result") == title
    assert message in (await page.text_content("#message") or "")
    providers = (await api.get(f"{API}/providers", headers=user_headers)).json()
    assert [p["status"] for p in providers] == ["active" if button == "#approve" else "error"]
