"""Fixtures: a cloned database per xdist worker, a rolled-back transaction per test, and Redis
keys namespaced per run and per test. Nothing here can reach the dev environment: every
connection is checked to be the test database and the test role first.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from tests.support.databases import (
    create_worker_database,
    drop_leftovers,
    drop_worker_database,
    worker_database_name,
)
from tests.test_config import TEST_ENV_FILE, TestSettings

from dashtam.core.config import ENV_FILE_VARIABLE
from dashtam.core.init_test_db import check_settings_are_for_testing
from dashtam.core.redis import RedisKeys
from dashtam.main import AppResources, create_app

pytest_plugins = ("tests.support.sandbox_fixtures", "tests.support.tools")

RUN_ID_VARIABLE = "DASHTAM_TEST_RUN_ID"
_test_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    # Code under test that loads settings itself must see the test environment.
    os.environ[ENV_FILE_VARIABLE] = str(TEST_ENV_FILE)
    if not hasattr(config, "workerinput"):  # the controller: xdist workers inherit this
        os.environ.setdefault(RUN_ID_VARIABLE, f"{os.getpid()}x{secrets.token_hex(3)}")


@pytest.fixture(scope="session")
def run_id() -> str:
    return os.environ[RUN_ID_VARIABLE]


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    workerinput = getattr(request.config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "main"


@pytest.fixture(scope="session")
def base_settings() -> TestSettings:
    if not TEST_ENV_FILE.is_file():
        pytest.exit("env/.env.test is missing: run `make test` (or `make test-setup`).", 2)
    settings = TestSettings()
    check_settings_are_for_testing(settings)
    if settings.redis_db == 0:
        pytest.exit("Refusing to run: the test Redis URL selects index 0 (dev's index).", 2)
    return settings


@pytest.fixture(scope="session")
def database_url(base_settings: TestSettings, run_id: str, worker_id: str) -> Iterator[URL]:
    """This worker's own database, cloned from the migrated template for this run."""
    name = worker_database_name(base_settings.database_name, run_id, worker_id)
    if worker_id in ("main", "gw0"):
        asyncio.run(drop_leftovers(base_settings))
    url = asyncio.run(create_worker_database(base_settings, name))
    yield url
    asyncio.run(drop_worker_database(base_settings, name))


@pytest.fixture(scope="session")
def settings(base_settings: TestSettings, database_url: URL, run_id: str) -> TestSettings:
    """Test settings pointed at this worker's database and this run's Redis namespace."""
    return TestSettings(
        DATABASE_URL=database_url.render_as_string(hide_password=False),
        REDIS_KEY_PREFIX=f"{base_settings.REDIS_KEY_PREFIX}{run_id}:",
    )


@pytest.fixture(scope="session")
async def engine(settings: TestSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(settings.database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is rolled back when the test ends."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            await transaction.rollback()


@pytest.fixture
def session_factory(db_connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions joined to the test's transaction: their commits become savepoints."""
    return async_sessionmaker(
        bind=db_connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
def session(session_factory: async_sessionmaker[AsyncSession]) -> AsyncSession:
    """A session in the test's transaction. Not closed on its own: the rollback of
    `db_connection` ends everything it did, and a sync fixture costs a test far less."""
    return session_factory()


@pytest.fixture(scope="session")
async def redis(settings: TestSettings) -> AsyncIterator[Redis]:
    """The test Redis; at the end only this run's keys are deleted (never FLUSHALL)."""
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    async for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=500):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def redis_keys(settings: TestSettings, worker_id: str) -> RedisKeys:
    """A namespace of this test's own inside the run's namespace (counters are per worker)."""
    return RedisKeys(f"{settings.REDIS_KEY_PREFIX}{worker_id}:t{next(_test_counter)}:")


@pytest.fixture
def app_settings(settings: TestSettings, redis_keys: RedisKeys) -> TestSettings:
    return settings.model_copy(update={"REDIS_KEY_PREFIX": redis_keys.prefix})


@pytest.fixture
def app(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
) -> object:
    return create_app(app_settings, resources=AppResources(engine, session_factory, redis))


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
