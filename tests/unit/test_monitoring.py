"""The monitoring files, checked by Prometheus's own promtool: the scrape configurations (the
containers' and the one `make monitor` writes), the alert rules and their unit tests, and every
query of the Grafana dashboard."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.support.metrics import DASHBOARD, MONITORING, dashboard_queries
from tests.test_config import TestSettings

from dashtam.devenv.monitor import ALERT_RULES, Monitor
from dashtam.devenv.profiles import Profile

SECRET_PATH = "/run/secrets/METRICS_TOKEN"


def promtool_run(promtool: str, *args: str, cwd: Path = MONITORING) -> str:
    result = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_alert_rules_are_valid(promtool: str) -> None:
    assert "SUCCESS: 5 rules found" in promtool_run(promtool, "check", "rules", "alerts.yml")


def test_alert_rules_fire_when_they_should(promtool: str) -> None:
    assert "SUCCESS" in promtool_run(promtool, "test", "rules", "alerts.test.yml")


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load(ALERT_RULES.read_text())["groups"][0]["rules"]
    tested = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
    names = {case["alertname"] for test in tested for case in test["alert_rule_test"]}
    assert names == {rule["alert"] for rule in rules}
    wanted = {"DashtamConnectionsNeedReauth", "DashtamSyncFailureRate", "DashtamJobQueueLag"}
    assert wanted | {"DashtamHttp5xxRate"} <= names


def test_dev_container_config_is_valid(promtool: str) -> None:
    output = promtool_run(promtool, "check", "config", "prometheus.dev.yml")
    assert "SUCCESS: 1 rule files found" in output


def test_prod_container_config_is_valid(promtool: str, tmp_path: Path) -> None:
    """As written, except that the token file (a Docker secret in the container) is a
    temporary file here: promtool insists that it exists."""
    token = tmp_path / "METRICS_TOKEN"
    token.write_text("token")
    text = (MONITORING / "prometheus.prod.yml").read_text()
    assert text.count(SECRET_PATH) == 2  # app and worker both send the token
    (tmp_path / "prometheus.yml").write_text(text.replace(SECRET_PATH, str(token)))
    (tmp_path / "alerts.yml").write_text(ALERT_RULES.read_text())
    output = promtool_run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS: 1 rule files found" in output


@pytest.mark.parametrize("token", ["", "a-metrics-token"])
def test_the_config_make_monitor_writes_is_valid(promtool: str, tmp_path: Path, token: str) -> None:
    profile = Profile("dev", ephemeral=False, env_dir=tmp_path, state_root=tmp_path / "state")
    settings = TestSettings(
        APP_PORT=24500, APP_TLS=True, WORKER_METRICS_PORT=24501, METRICS_TOKEN=token
    )
    monitor = Monitor(profile, settings)
    monitor.folder.mkdir(parents=True)
    config = monitor.config()
    monitor.config_file.write_text(json.dumps(config))
    promtool_run(promtool, "check", "config", str(monitor.config_file), cwd=tmp_path)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["dashtam-app"]["static_configs"] == [{"targets": ["127.0.0.1:24500"]}]
    assert jobs["dashtam-app"]["scheme"] == "https"
    assert jobs["dashtam-worker"]["static_configs"] == [{"targets": ["127.0.0.1:24501"]}]
    for job in jobs.values():
        if token:
            credentials = Path(job["authorization"]["credentials_file"])
            assert credentials.read_text() == token
            assert credentials.stat().st_mode & 0o077 == 0
        else:
            assert "authorization" not in job


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each query becomes a recording rule, which promtool parses."""
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr}
        for n, expr in enumerate(dashboard_queries())
    ]
    assert len(rules) >= 16
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool_run(promtool, "check", "rules", str(path), cwd=tmp_path)


def test_dashboard_uses_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
