"""Which influent database a 1.x database and retention policy land in.

The default policy lands in the database itself. InfluxDB 3 names another policy's database
``<db>/<rp>``; influent's database names cannot hold a slash (they are folder names in the
object store), so here it is ``<db>_<rp>``. ``--target-db`` / ``--db`` choose any other name.
"""
from __future__ import annotations

DEFAULT_POLICY_NAMES = ("autogen", "default")


def policy_database(db: str, rp: str | None, is_default: bool = False) -> str:
    if not rp or is_default or rp in DEFAULT_POLICY_NAMES:
        return db
    return f"{db}_{rp}"
