"""``python -m dashtam.sandbox``: serve the sandbox with uvicorn (settings from SANDBOX_* env)."""

import argparse

import uvicorn

from dashtam.sandbox.app import create_app
from dashtam.sandbox.config import SandboxConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dashtam.sandbox",
        description="Run the Schwab-compatible sandbox (OAuth + Trader API emulator).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8282, help="port to bind (default %(default)s)")
    parser.add_argument("--seed", type=int, help="data seed (overrides SANDBOX_SEED)")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate")
    parser.add_argument("--ssl-keyfile", help="private key for --ssl-certfile")
    parser.add_argument(
        "--log-level", default="info", help="uvicorn log level (default %(default)s)"
    )
    args = parser.parse_args(argv)
    overrides = {"seed": args.seed} if args.seed is not None else {}
    uvicorn.run(
        create_app(SandboxConfig(**overrides)),
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
