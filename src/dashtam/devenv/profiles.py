"""The two environments the project runs: where their files live and how they differ."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from dashtam.core.config import ENV_DIR, EXAMPLE_ENV_DIR, STATE_ROOT, Settings, load_settings


class ServiceMode(StrEnum):
    LOCAL = "local"
    DOCKER = "docker"
    EXTERNAL = "external"


@dataclass(frozen=True)
class Profile:
    name: str  # "dev", "test" or "prod"
    ephemeral: bool  # test: data on tmpfs, durability off, may be dropped
    env_dir: Path = ENV_DIR
    example_dir: Path = EXAMPLE_ENV_DIR
    state_root: Path = STATE_ROOT
    production: bool = False  # prod: Caddy in front, several app workers, no reload

    @property
    def env_file(self) -> Path:
        return self.env_dir / f".env.{self.name}"

    @property
    def example_file(self) -> Path:
        source = "ci" if self.name == "test" and os.environ.get("CI") == "true" else self.name
        return self.example_dir / f".env.{source}.example"

    @property
    def state_dir(self) -> Path:
        return self.state_root / self.name

    @property
    def tag(self) -> str:
        """Names this checkout's copy of the environment in folders outside the repo."""
        digest = hashlib.sha256(str(self.state_root.resolve()).encode()).hexdigest()[:10]
        return f"dashtam-{digest}-{self.name}"

    @property
    def data_dir(self) -> Path:
        """Database files: tmpfs for test (when the machine has /dev/shm), else the state dir."""
        if self.ephemeral and Path("/dev/shm").is_dir():  # noqa: S108 - tmpfs by design
            return Path("/dev/shm") / self.tag  # noqa: S108
        return self.state_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    def settings(self) -> Settings:
        return load_settings(self.env_file)

    def service_mode(self) -> ServiceMode:
        """`DASHTAM_SERVICES` decides; DATABASE_URL/REDIS_URL in the environment mean external."""
        chosen = os.environ.get("DASHTAM_SERVICES")
        if chosen:
            return ServiceMode(chosen)
        if os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL"):
            return ServiceMode.EXTERNAL
        return ServiceMode.LOCAL


DEV = Profile("dev", ephemeral=False)
TEST = Profile("test", ephemeral=True)
PROD = Profile("prod", ephemeral=False, production=True)
PROFILES = {"dev": DEV, "test": TEST, "prod": PROD}
