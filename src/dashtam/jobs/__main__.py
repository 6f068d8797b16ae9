"""``python -m dashtam.jobs``: run the background worker with this environment's settings."""

from dashtam.core.config import load_settings
from dashtam.core.logging import configure_logging
from dashtam.jobs.worker import create_worker


def main() -> None:
    settings = load_settings()
    configure_logging(settings.LOG_LEVEL)
    create_worker(settings).run()


if __name__ == "__main__":
    main()
