"""Reading Prometheus text with prometheus_client's own parser, for assertions on samples."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]
MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "dashtam.json"
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def queried_metric_names() -> set[str]:
    """The sample names the Grafana dashboard and the alert rules ask Prometheus for."""
    texts = [*dashboard_queries(), (MONITORING / "alerts.yml").read_text()]
    return {name for text in texts for name in re.findall(r"\bdashtam_[a-z_]+", text)}


@dataclass(frozen=True)
class Scrape:
    samples: dict[Key, float]
    types: dict[str, str]  # family name -> counter, gauge, histogram, ...

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[Key, float] = {}
        types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return cls(samples, types)

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when it has not appeared yet (a counter nobody touched)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= set(ls))

    def sample_names(self) -> set[str]:
        """Every sample name the families can have, including those with no sample yet."""
        names = {name for name, _ in self.samples}
        for family, kind in self.types.items():
            names |= {family + suffix for suffix in SAMPLE_SUFFIXES.get(kind, ("",))}
        return names

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(ls)[label] for (n, ls) in self.samples if n == name and label in dict(ls)}
