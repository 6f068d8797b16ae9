"""The test-database initialiser refuses every unsafe configuration and then touches nothing.

Each refusal is aimed at a development-like database (migrated, holding rows) on the test
server; its rows must all still be there afterwards. `make test` never reaches the real dev
environment, so this stand-in plays its part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from tests.support.databases import (
    create_worker_database,
    drop_worker_database,
    stamp_as_template,
)
from tests.test_config import TestSettings

from dashtam.core.config import Environment
from dashtam.core.init_test_db import (
    UnsafeDatabaseError,
    check_connection_is_for_testing,
    init_test_db,
)
from dashtam.core.migrations import upgrade_to_head

DEV_ROWS = 3


async def _count_users(url: URL) -> int:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM users"))
    await engine.dispose()
    return int(count or 0)


@pytest.fixture(scope="session")
async def devlike_url(base_settings: TestSettings, worker_id: str) -> URL:
    """A migrated database whose name lacks "test", holding users: dev's stand-in (made, and
    reached here, as the test owner role, which may create databases)."""
    url = base_settings.owner_database_url
    name = f"dashtam_devlike_{worker_id}"
    admin = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        pass  # kept from an earlier run on this (throwaway, tmpfs) test server
    finally:
        await admin.close()
    devlike = url.set(database=name)
    engine = create_async_engine(devlike)
    async with engine.connect() as connection:
        await upgrade_to_head(connection)
        await connection.execute(text("DELETE FROM users"))
        await connection.execute(
            text(
                "INSERT INTO users (id, email, name, password_hash, is_active) "
                "SELECT gen_random_uuid(), 'dev' || n || '@example.com', 'Dev', 'x', true "
                "FROM generate_series(1, :rows) AS n"
            ),
            {"rows": DEV_ROWS},
        )
        await connection.commit()
    await engine.dispose()
    return devlike


@pytest.fixture
async def dev_rows_survive(devlike_url: URL) -> AsyncIterator[None]:
    assert await _count_users(devlike_url) == DEV_ROWS
    yield
    assert await _count_users(devlike_url) == DEV_ROWS


def aimed_at(url: URL, **values: object) -> TestSettings:
    """Test settings on `url`'s database: the app's role in DATABASE_URL, as always."""
    base = TestSettings()
    runtime = url.set(username=base.runtime_role, password=base.POSTGRES_PASSWORD)
    return TestSettings(DATABASE_URL=runtime.render_as_string(hide_password=False), **values)  # type: ignore[arg-type]


@pytest.mark.usefixtures("dev_rows_survive")
@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"ENVIRONMENT": Environment.DEVELOPMENT}, "ENVIRONMENT is 'development'"),
        ({"TESTING": False}, "TESTING is not true"),
        ({}, "database name 'dashtam_devlike_"),
    ],
)
async def test_refuses_and_leaves_dev_rows(
    devlike_url: URL, values: dict[str, object], reason: str
) -> None:
    with pytest.raises(UnsafeDatabaseError, match=reason):
        await init_test_db(aimed_at(devlike_url, **values))


@pytest.mark.usefixtures("dev_rows_survive")
@pytest.mark.parametrize(
    "values", [{"ENVIRONMENT": Environment.DEVELOPMENT}, {"TESTING": False}, {}]
)
async def test_a_template_stamp_stands_in_for_no_check(
    devlike_url: URL, values: dict[str, object]
) -> None:
    """The reuse path runs after every check: a stamped dev database is refused all the same."""
    await stamp_as_template(devlike_url)
    with pytest.raises(UnsafeDatabaseError, match="Refusing"):
        await init_test_db(aimed_at(devlike_url, **values))
    with pytest.raises(UnsafeDatabaseError, match="Refusing"):
        await init_test_db(aimed_at(devlike_url, **values), rebuild=True)


@pytest.mark.usefixtures("dev_rows_survive")
async def test_test_in_the_url_outside_the_name_does_not_pass(devlike_url: URL) -> None:
    """A substring check on the URL would pass this; the parsed name does not."""
    url = devlike_url.update_query_dict({"application_name": "dashtam_test"})
    assert "test" in url.render_as_string(hide_password=False).replace(url.password or "", "")
    with pytest.raises(UnsafeDatabaseError, match="does not contain 'test'"):
        await init_test_db(aimed_at(url))


@pytest.mark.usefixtures("dev_rows_survive")
async def test_live_database_check_refuses_a_non_test_database(devlike_url: URL) -> None:
    """If the name in the settings lied (a proxy alias, say), the server's answer decides."""
    settings = aimed_at(devlike_url.set(database="dashtam_test"))
    engine = create_async_engine(devlike_url)
    async with engine.connect() as connection:
        with pytest.raises(UnsafeDatabaseError, match="connected to database 'dashtam_devlike_"):
            await check_connection_is_for_testing(connection, settings.POSTGRES_OWNER_USER)
    await engine.dispose()


async def test_live_role_check_refuses_another_role(base_settings: TestSettings) -> None:
    engine = create_async_engine(base_settings.database_url)
    async with engine.connect() as connection:
        with pytest.raises(UnsafeDatabaseError, match="not the test role 'other_test_user'"):
            await check_connection_is_for_testing(connection, "other_test_user")
        # The app's role is a test role too, but not the owner the initialiser must be.
        with pytest.raises(UnsafeDatabaseError, match="not the test role 'dashtam_test_owner'"):
            await check_connection_is_for_testing(connection, base_settings.POSTGRES_OWNER_USER)
    await engine.dispose()


async def test_rebuilds_a_test_database_from_nothing(
    base_settings: TestSettings, run_id: str, worker_id: str
) -> None:
    name = f"{base_settings.database_name}_{run_id}_{worker_id}init"
    url = await create_worker_database(base_settings, name)
    try:
        engine = create_async_engine(aimed_at(url).owner_database_url)  # CREATE TABLE: owner
        async with engine.connect() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (id, email, name, password_hash, is_active) "
                    "VALUES (gen_random_uuid(), 'left@over.test', 'x', 'x', true)"
                )
            )
            await connection.execute(text("CREATE TABLE stray (id int)"))
            await connection.commit()
        await engine.dispose()

        prepared = await init_test_db(aimed_at(url))

        assert prepared.rebuilt_because == "it carried no template stamp"
        assert "users" in prepared.tables
        assert "stray" not in prepared.tables
        assert await _count_users(url) == 0
    finally:
        await drop_worker_database(base_settings, name)
