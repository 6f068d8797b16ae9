"""`make bench`: run every benchmark module, print a table, save bench/results/latest.json.

Each module runs in a fresh interpreter, so what one leaves behind (a grown heap the garbage
collector keeps walking, threads, open pools) cannot slow the next.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

MODULES = ("devenv", "auth_throughput", "metrics_and_proxy", "providers", "sync")
RESULTS = Path(__file__).parent / "results"


def main(selected: list[str]) -> None:
    console = Console()
    collected: dict[str, dict[str, float]] = {}
    for name in selected or MODULES:
        if importlib.util.find_spec(f"bench.{name}") is None:
            console.print(f"[yellow]skipping {name}: no such benchmark[/]")
            continue
        console.print(f"[bold]running {name}[/] ...")
        collected[name] = _run_alone(name)
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


def _run_alone(name: str) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", "bench", "--one", name, out.name]
        subprocess.run(command, check=True)
        results: dict[str, float] = json.loads(Path(out.name).read_text())
    return results


def _one(name: str, out: str) -> None:
    """The child's side of `_run_alone`."""
    results = importlib.import_module(f"bench.{name}").run()
    Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        _one(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1:])
