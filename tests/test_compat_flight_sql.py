"""Arrow Flight SQL through the ADBC Flight SQL driver's DBAPI, as SQL tools use it: connect,
``adbc_get_objects``, a statement, a prepared statement with a parameter, metadata calls; on an
API without a token and on one that requires it (one worker, one catalog behind both)."""
from __future__ import annotations

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import httpx
import pyarrow as pa
import pytest
from adbc_driver_flightsql import DatabaseOptions

from influent.config import Settings
from influent.devstack import free_port
from tests.harness import start_api, start_worker, unique, wait_for

pytestmark = pytest.mark.integration
TOKEN = "flight-sql-secret"


@pytest.fixture(scope="module")
def apis(kafka_bootstrap, redis_url, tmp_path_factory):
    """(settings without a token, settings with one), the same data behind both."""
    state = tmp_path_factory.mktemp("flightsql")
    open_settings = Settings(state_dir=state, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                             topic_prefix=unique("f") + ".", partitions=1,
                             http_bind=f"127.0.0.1:{free_port()}")
    locked = open_settings.replace(http_bind=f"127.0.0.1:{free_port()}", token=TOKEN,
                                   state_dir=state / "locked")
    worker = start_worker(open_settings, "w1", free_port())
    procs = [start_api(open_settings), start_api(locked)]
    try:
        lines = "cpu,host=a usage=1.5 1000000000\ncpu,host=b usage=2.5 2000000000\nmem,host=a free=7i 1000000000"
        resp = httpx.post(f"{open_settings.http_url}/api/v3/write_lp",
                          params={"db": "fsql", "precision": "ns"}, content=lines)
        assert resp.status_code == 204, resp.text
        wait_for(lambda: httpx.get(f"{open_settings.http_url}/api/v3/query_sql", params={
            "db": "fsql", "q": "SELECT count(*) AS n FROM cpu"}).text == '[{"n":2}]',
                 what="rows queryable")
        yield open_settings, locked
    finally:
        for proc in procs:
            proc.stop()
        worker.stop()


def connect(settings: Settings, token: str | None = None, database: str = "fsql"):
    kwargs = {DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "database": database}
    if token:
        kwargs[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    return flightsql.connect(f"grpc://{settings.http_host}:{settings.http_port}", db_kwargs=kwargs)


def check_session(conn) -> None:
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["public"]
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["iox"]
    tables = {t["table_name"]: t for t in schemas[0]["db_schema_tables"]}
    assert sorted(tables) == ["cpu", "mem"]
    assert [c["column_name"] for c in tables["cpu"]["table_columns"]] == ["host", "time", "usage"]
    assert conn.adbc_get_table_schema("cpu", db_schema_filter="iox") == pa.schema([
        ("host", pa.string()), pa.field("time", pa.timestamp("ns"), nullable=False),
        ("usage", pa.float64())])
    assert conn.adbc_get_table_types() == ["BASE TABLE"]
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "influent", info
    with conn.cursor() as cur:
        cur.execute("SELECT host, usage FROM cpu ORDER BY host")
        assert cur.fetchall() == [("a", 1.5), ("b", 2.5)]
        cur.execute("SELECT host, usage FROM cpu WHERE usage > ? ORDER BY host", (2.0,))
        assert cur.fetchall() == [("b", 2.5)]
        cur.adbc_prepare("SELECT count(*) AS n FROM cpu WHERE host = ?")
        cur.execute("SELECT count(*) AS n FROM cpu WHERE host = ?", ("a",))
        assert cur.fetchall() == [(1,)]
        cur.execute("SELECT count(*) AS n FROM cpu WHERE host = ?", ("zzz",))
        assert cur.fetchall() == [(0,)]
        cur.execute("SELECT '?' AS q, free FROM mem")  # a quoted ? is no placeholder
        assert cur.fetch_arrow_table().to_pylist() == [{"q": "?", "free": 7}]


def test_adbc_without_a_token(apis):
    open_settings, _ = apis
    with connect(open_settings) as conn:
        check_session(conn)


def test_adbc_with_a_token(apis):
    _, locked = apis
    with connect(locked, TOKEN) as conn:
        check_session(conn)
    for token in (None, "wrong"):
        with pytest.raises(adbc_driver_manager.Error) as err:
            with connect(locked, token) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        assert "UNAUTHENTICATED" in str(err.value) or "Unauthenticated" in str(err.value)


def test_errors_reach_the_client(apis):
    open_settings, _ = apis
    with connect(open_settings) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match="nope"):
            cur.execute("SELECT * FROM nope")
    with connect(open_settings, database="no_such_db") as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match="database not found"):
            cur.execute("SELECT 1")
    with connect(open_settings) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_sql_query("INSERT INTO cpu VALUES ('c', now(), 3.0)")
        with pytest.raises(adbc_driver_manager.Error, match="read-only"):
            cur.adbc_statement.execute_update()  # DoPut CommandStatementUpdate
        try:  # a DML text as a query: refused by the engine, and never a write
            cur.execute("INSERT INTO cpu VALUES ('c', now(), 3.0)")
            cur.fetchall()
        except adbc_driver_manager.Error:
            pass
        cur.execute("SELECT count(*) FROM cpu")
        assert cur.fetchall() == [(2,)]
