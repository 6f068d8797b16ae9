"""Run several `dashtam` commands in one interpreter, as the console script would run them.

Importing the CLI is most of a command's cost, so a test with many commands sends them here:
argv lists as JSON on stdin; one {argv, exit_code, output, error} per command on stdout, where
`error` names an exception that escaped the command (a user would have seen its traceback).
"""

from __future__ import annotations

import json
import sys

from typer.testing import CliRunner

from dashtam.cli import app


def main() -> None:
    runner = CliRunner()
    results = []
    for argv in json.load(sys.stdin):
        result = runner.invoke(app, argv)
        escaped = result.exception and not isinstance(result.exception, SystemExit)
        results.append(
            {
                "argv": argv,
                "exit_code": result.exit_code,
                "output": result.output,
                "error": repr(result.exception) if escaped else None,
            }
        )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
