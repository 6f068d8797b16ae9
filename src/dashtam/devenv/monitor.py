"""`make monitor`: a real Prometheus (Debian's package) scraping an environment's app and worker.

Its configuration is written for the environment's own ports, TLS and metrics token, and loads
the same alert rules as the containers (monitoring/alerts.yml). Data stays in the environment's
state folder, so `make clean` removes it with the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from dashtam.core.config import PROJECT_ROOT, Settings
from dashtam.devenv.apt import ensure_debian_package
from dashtam.devenv.processes import ManagedProcess, require_free_port, wait_until
from dashtam.devenv.profiles import Profile

ALERT_RULES = PROJECT_ROOT / "monitoring" / "alerts.yml"
KEY_QUERIES = (
    ("requests/s by route", "sum by (route) (rate(dashtam_http_requests_total[5m]))"),
    (
        "5xx share",
        'sum(rate(dashtam_http_requests_total{status=~"5.."}[5m])) / '
        "sum(rate(dashtam_http_requests_total[5m]))",
    ),
    ("connections by status", "dashtam_provider_connections"),
    ("queue lag", "dashtam_job_queue_lag_seconds"),
)


class Monitor:
    def __init__(self, profile: Profile, settings: Settings) -> None:
        self.profile = profile
        self.settings = settings
        self.folder = profile.state_dir / "monitor"
        self.process = ManagedProcess(
            name="prometheus",
            pid_file=profile.run_dir / "prometheus.pid",
            log_file=profile.log_dir / "prometheus.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.PROMETHEUS_PORT}"

    @property
    def config_file(self) -> Path:
        return self.folder / "prometheus.yml"

    def config(self) -> dict[str, Any]:
        """Two jobs, `dashtam-app` and `dashtam-worker`, as in the containers' configuration."""
        settings = self.settings
        auth: dict[str, Any] = {}
        if settings.METRICS_TOKEN:
            token_file = self.folder / "metrics-token"
            token_file.write_text(settings.METRICS_TOKEN)
            token_file.chmod(0o600)
            auth = {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
        app: dict[str, Any] = {
            "job_name": "dashtam-app",
            "static_configs": [{"targets": [f"127.0.0.1:{settings.APP_PORT}"]}],
            **auth,
        }
        if settings.APP_TLS:
            app |= {"scheme": "https", "tls_config": {"ca_file": str(settings.tls_cert_path)}}
        jobs = [app]
        if settings.WORKER_METRICS_PORT:
            worker_target = f"127.0.0.1:{settings.WORKER_METRICS_PORT}"
            jobs.append(
                {
                    "job_name": "dashtam-worker",
                    "static_configs": [{"targets": [worker_target]}],
                    **auth,
                }
            )
        return {
            "global": {
                "scrape_interval": "5s",
                "evaluation_interval": "15s",
                "external_labels": {"environment": self.profile.name},
            },
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": jobs,
        }

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 60.0) -> bool:
        """Start Prometheus (installing it when missing); False when it already runs."""
        if self.process.running_pid() is not None:
            return False
        binary = ensure_debian_package("prometheus", "prometheus")
        require_free_port(self.settings.PROMETHEUS_PORT, "PROMETHEUS_PORT", self.profile.env_file)
        self.folder.mkdir(parents=True, exist_ok=True)
        # JSON is YAML too: no YAML writer needed for a file only Prometheus reads.
        self.config_file.write_text(json.dumps(self.config(), indent=2))
        command = [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address=127.0.0.1:{self.settings.PROMETHEUS_PORT}",
        ]
        self.process.start(command, env=dict(os.environ), cwd=self.folder)
        wait_until(self.ready, timeout=timeout, what="Prometheus", process=self.process)
        return True

    def stop(self) -> bool:
        return self.process.stop()
