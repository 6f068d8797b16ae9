"""Settings for the Schwab-compatible sandbox (environment prefix ``SANDBOX_``)."""

from datetime import date
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class SandboxConfig(BaseSettings):
    """Everything that shapes one sandbox instance; two instances never share state."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", extra="ignore")

    client_id: str = "dashtam-sandbox-client"
    client_secret: str = "dashtam-sandbox-secret"  # noqa: S105 - a published sandbox value
    redirect_uris: list[str] = ["https://127.0.0.1:8182/callback"]

    # Synthetic data: the same seed and reference date always give the same data.
    seed: int = 42
    accounts: int = 3
    transactions_per_account: int = 250
    pending_per_account: int = 2
    history_days: int = 730
    reference_date: date | None = None  # None means today (UTC)

    # Lifetimes in seconds, as Schwab documents them (30 minutes, 7 days).
    access_token_ttl: int = 1800
    refresh_token_ttl: int = 7 * 24 * 3600
    code_ttl: int = 60
    pkce_required: bool = False

    # Where logins, posted/removed transactions and scheduled faults are kept across restarts
    # (`dashtam up` sets one for dev); None keeps them in memory only, as tests do.
    state_file: Path | None = None

    # Fault injection: every Nth Trader API call fails that way (0 disables).
    fault_rate_limit_every: int = 0
    fault_server_error_every: int = 0
    latency_ms: int = 0
