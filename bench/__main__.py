"""`make bench`: run every benchmark module, print a table, save bench/results/latest.json."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

MODULES = ("devenv", "auth_throughput", "providers", "sync")
RESULTS = Path(__file__).parent / "results"


def main(selected: list[str]) -> None:
    console = Console()
    collected: dict[str, dict[str, float]] = {}
    for name in selected or MODULES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            console.print(f"[yellow]skipping {name}: no such benchmark[/]")
            continue
        console.print(f"[bold]running {name}[/] ...")
        collected[name] = module.run()
    table = Table(title="Dashtam benchmarks")
    for column in ("benchmark", "measure", "value"):
        table.add_column(column)
    for name, values in collected.items():
        for measure, value in values.items():
            table.add_row(name, measure, f"{value:,.3f}")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    stamped = {"measured_at": datetime.now(UTC).isoformat(), "results": collected}
    (RESULTS / "latest.json").write_text(json.dumps(stamped, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
