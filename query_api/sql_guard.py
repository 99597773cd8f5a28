"""Guardrails for every SQL statement the query API hands to DataFusion.

* **Read-only.** Statements are planned with DataFusion's own statement options (no DDL, no DML
  -- which includes ``COPY ... TO`` and ``INSERT`` --, no ``SET``/``PREPARE``/transactions), so a
  user can neither write files on the server nor change a session, whichever path the SQL came
  by: HTTP SQL, the InfluxQL translation, Flight, a plugin's ``influxdb3_local.query``. The
  options are checked on the whole logical plan (``EXPLAIN ANALYZE COPY ...`` is refused too).
* **Memory.** Each query's session gets a DataFusion memory pool of
  ``INFLUENT_QUERY_MEMORY_BYTES``; an operator that needs more spills if it can (sorts) and
  fails the query otherwise.
* **Time.** ``INFLUENT_QUERY_TIMEOUT`` bounds a query from planning to its first result batch
  (the rest is checked between batches). Execution runs on DataFusion's own threads and is
  awaited, so the event loop keeps answering other requests; at the limit the pending
  DataFusion future is cancelled, which stops its work.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datafusion
import pyarrow as pa

READ_ONLY = (datafusion.SQLOptions().with_allow_ddl(False).with_allow_dml(False)
             .with_allow_statements(False))
_REFUSED_KINDS = ("DDL not supported", "DML not supported", "Statement not supported")


class QueryError(ValueError):
    """A query the engine refused (bad SQL, unknown table, ...): a 400 for the client."""


class NotAQuery(QueryError):
    """The statement would change something (DDL, DML, COPY, SET): the endpoints are read-only."""


class QueryMemoryExceeded(QueryError):
    """The query needed more working memory than ``INFLUENT_QUERY_MEMORY_BYTES``."""


class QueryTimeout(TimeoutError):
    """The query ran past ``INFLUENT_QUERY_TIMEOUT``."""


@dataclass(frozen=True)
class QueryLimits:
    timeout_s: float = 60.0
    memory_bytes: int = 1 << 30


_limits = QueryLimits()


def configure(limits: QueryLimits) -> None:
    """Set this process's limits (the API does it once at start-up from its settings)."""
    global _limits
    _limits = limits


def limits() -> QueryLimits:
    return _limits


def new_session(partitions: int | None = None) -> datafusion.SessionContext:
    """A DataFusion session whose operators share one memory pool of the configured size;
    ``partitions`` sets how many ways its plans split (one avoids repartitioning small
    inputs, which costs more than it saves)."""
    runtime = datafusion.RuntimeEnvBuilder().with_greedy_memory_pool(_limits.memory_bytes)
    config = datafusion.SessionConfig()
    if partitions is not None:
        config = config.with_target_partitions(partitions)
    return datafusion.SessionContext(config, runtime)


def query_error(exc: Exception) -> QueryError:
    """DataFusion's plain Exception as the API's error, with a message a user can act on."""
    if isinstance(exc, QueryError):
        return exc
    message = " ".join(str(exc).split())
    if any(kind in message for kind in _REFUSED_KINDS):
        return NotAQuery(f"only queries are allowed: the query endpoints are read-only "
                         f"({message})")
    if "Resources exhausted" in message:
        return QueryMemoryExceeded(
            f"the query exceeded the memory limit of {_limits.memory_bytes} bytes "
            f"(INFLUENT_QUERY_MEMORY_BYTES): {message}")
    return QueryError(message)


def plan(ctx: datafusion.SessionContext, sql: str, params: dict[str, Any] | None = None
         ) -> datafusion.DataFrame:
    """Plan one read-only statement; QueryError (NotAQuery for DDL/DML/statements)."""
    try:
        return ctx.sql_with_options(sql, READ_ONLY, param_values=params or None)
    except Exception as exc:  # DataFusion raises plain Exceptions for user errors
        raise query_error(exc) from exc


TIMEOUT_PREFIX = "the query exceeded the time limit"


def timeout_error() -> QueryTimeout:
    return QueryTimeout(f"{TIMEOUT_PREFIX} of {_limits.timeout_s:g} s (INFLUENT_QUERY_TIMEOUT)")


async def within_limit(awaitable, deadline: float):
    """Await ``awaitable`` until the monotonic ``deadline``; QueryTimeout past it (the
    awaited DataFusion future is cancelled). Runs in the caller's task (``wait_for`` would
    start another task: one more event loop turn per query)."""
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await awaitable
    except TimeoutError:
        raise timeout_error() from None


async def next_batch(stream: datafusion.RecordBatchStream) -> pa.RecordBatch | None:
    """The stream's next batch, computed on DataFusion's threads (None at the end)."""
    try:
        batch = await stream.__anext__()
    except StopAsyncIteration:
        return None
    except Exception as exc:
        raise query_error(exc) from exc
    return batch.to_pyarrow()


def remaining(stream: datafusion.RecordBatchStream, deadline: float) -> Iterator[pa.RecordBatch]:
    """The rest of a stream for a response being written (the deadline checked per batch)."""
    while True:
        if time.monotonic() > deadline:
            raise timeout_error()
        try:
            batch = next(stream)
        except StopIteration:
            return
        yield batch.to_pyarrow()


async def collect(df: datafusion.DataFrame, deadline: float) -> pa.Table:
    """Every result batch, within the deadline."""
    async def run() -> list[pa.RecordBatch]:
        stream = await start(df)
        batches = []
        while (batch := await next_batch(stream)) is not None:
            batches.append(batch)
        return batches

    batches = await within_limit(run(), deadline)
    return pa.Table.from_batches(batches) if batches else df.schema().empty_table()


async def start(df: datafusion.DataFrame) -> datafusion.RecordBatchStream:
    """Start executing a planned query (physical planning runs off the event loop)."""
    try:
        return await asyncio.to_thread(df.execute_stream)
    except Exception as exc:
        raise query_error(exc) from exc
