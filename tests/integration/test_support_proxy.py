"""The test proxy really cuts and restores a connection (the outage tests rely on it)."""

import asyncpg
import pytest

from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration


async def test_a_cut_proxy_refuses_and_drops_connections_until_restored(postgres_dsn: str) -> None:
    proxy, dsn = TcpProxy.for_dsn(postgres_dsn)
    async with proxy:
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("SELECT 1") == 1
        assert proxy.connections == 1
        await proxy.cut()
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)):
            await conn.fetchval("SELECT 1")
        with pytest.raises(OSError):  # noqa: PT011 - refused or reset: the operating system words it either way
            await asyncpg.connect(dsn)
        await proxy.restore()
        again = await asyncpg.connect(dsn)
        assert await again.fetchval("SELECT 2") == 2
        await again.close()
