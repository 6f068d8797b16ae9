"""Metric helpers without I/O: provider endpoint labels, the metered transport, timed jobs and
the metrics token."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from arq import Retry
from prometheus_client import REGISTRY
from tests.test_config import TestSettings

from dashtam.core.metrics import MeteredTransport, token_allows
from dashtam.jobs.metrics import timed_job
from dashtam.providers.registry import EndpointLabels, schwab_spec


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def labels() -> EndpointLabels:
    real = schwab_spec(TestSettings(SCHWAB_CLIENT_ID="id", SCHWAB_CLIENT_SECRET="s", TESTING=False))
    return EndpointLabels([real])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.schwabapi.com/v1/oauth/token", ("schwab", "/v1/oauth/token")),
        (
            "https://api.schwabapi.com/trader/v1/accounts/E5B1A2C3D4/transactions?types=TRADE",
            ("schwab", "/trader/v1/accounts/{account}/transactions"),
        ),
        ("https://api.schwabapi.com/trader/v1/accounts", ("schwab", "/trader/v1/accounts")),
        (
            "https://api.schwabapi.com/trader/v1/accounts/accountNumbers",
            ("schwab", "/trader/v1/accounts/accountNumbers"),
        ),
        ("https://api.schwabapi.com/marketdata/v1/quotes", ("schwab", "other")),
        ("https://elsewhere.example/v1/oauth/token", ("unknown", "other")),
    ],
)
def test_endpoint_labels_are_templates(
    labels: EndpointLabels, url: str, expected: tuple[str, str]
) -> None:
    assert labels(httpx.URL(url)) == expected


async def test_metered_transport_counts_answers_and_failures(labels: EndpointLabels) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/transactions"):
            raise httpx.ConnectError("no route", request=request)
        return httpx.Response(503 if "accounts" in request.url.path else 200)

    endpoint = "/trader/v1/accounts/{account}/transactions"
    counted = {
        ("/v1/oauth/token", "200"): 2,
        ("/trader/v1/accounts", "503"): 1,
        (endpoint, "error"): 1,
    }
    before = {
        key: sample(
            "dashtam_provider_requests_total", provider="schwab", endpoint=key[0], status=key[1]
        )
        for key in counted
    }
    timed_before = sample(
        "dashtam_provider_request_duration_seconds_count",
        provider="schwab",
        endpoint="/v1/oauth/token",
    )
    transport = MeteredTransport(httpx.MockTransport(answer), labels)
    async with httpx.AsyncClient(transport=transport, base_url="https://api.schwabapi.com") as http:
        await http.post("/v1/oauth/token")
        await http.post("/v1/oauth/token")
        assert (await http.get("/trader/v1/accounts")).status_code == 503
        with pytest.raises(httpx.ConnectError):
            await http.get("/trader/v1/accounts/HASH123/transactions")
    for (path, status), count in counted.items():
        now = sample(
            "dashtam_provider_requests_total", provider="schwab", endpoint=path, status=status
        )
        assert now - before[(path, status)] == count, (path, status)
    timed = sample(
        "dashtam_provider_request_duration_seconds_count",
        provider="schwab",
        endpoint="/v1/oauth/token",
    )
    assert timed - timed_before == 2


async def test_timed_job_records_each_outcome() -> None:
    async def flaky_job(ctx: dict[str, Any], what: str) -> str:
        if what == "retry":
            raise Retry(defer=1)
        if what == "boom":
            raise RuntimeError("boom")
        if what == "cancel":
            raise asyncio.CancelledError
        return what

    job = timed_job(flaky_job)
    assert job.__name__ == "flaky_job"  # arq names jobs after the function
    name = "dashtam_job_duration_seconds_count"
    outcomes = {"ok": "success", "retry": "retry", "boom": "error", "cancel": "cancelled"}
    before = {o: sample(name, job="flaky_job", outcome=o) for o in outcomes.values()}
    assert await job({}, "ok") == "ok"
    for what, error in (
        ("retry", Retry),
        ("boom", RuntimeError),
        ("cancel", asyncio.CancelledError),
    ):
        with pytest.raises(error):
            await job({}, what)
    for outcome in outcomes.values():
        assert sample(name, job="flaky_job", outcome=outcome) - before[outcome] == 1, outcome


@pytest.mark.parametrize(
    ("expected", "header", "allowed"),
    [
        ("", None, True),
        ("s3cret-token", None, False),
        ("s3cret-token", "Bearer s3cret-token", True),
        ("s3cret-token", "bearer s3cret-token", True),
        ("s3cret-token", "Bearer s3cret-tokenX", False),
        ("s3cret-token", "Basic s3cret-token", False),
        ("s3cret-token", "s3cret-token", False),
    ],
)
def test_metrics_token(expected: str, header: str | None, allowed: bool) -> None:
    assert token_allows(expected, header) is allowed
