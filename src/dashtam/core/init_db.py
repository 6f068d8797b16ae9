"""Database initialisation: migrate to head as the owner role, then grant the runtime role its
privileges. Idempotent; never drops anything.

Run before the dev app starts (`make up`, `make migrate`, or `python -m dashtam.core.init_db`).
"""

from __future__ import annotations

import asyncio
import logging

from dashtam.core.config import Settings, load_settings
from dashtam.core.database import create_engine
from dashtam.core.migrations import current_revision, head_revision, upgrade_to_head
from dashtam.core.roles import grant_runtime_privileges

logger = logging.getLogger("dashtam.init_db")


async def init_db(settings: Settings) -> str:
    """Bring the schema to head; returns a one-line summary of what was done."""
    engine = create_engine(settings, settings.owner_database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            before = await current_revision(connection)
            head = head_revision()
            if before == head:
                summary = f"database {settings.database_name!r} already at migration {head}"
            else:
                await upgrade_to_head(connection)
                summary = (
                    f"database {settings.database_name!r} migrated "
                    f"from {before or 'empty'} to {head}"
                )
            await connection.run_sync(grant_runtime_privileges, settings.runtime_role)
            await connection.commit()
    finally:
        await engine.dispose()
    logger.info(summary)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(asyncio.run(init_db(load_settings())))
