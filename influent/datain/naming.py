"""Which influent database a 1.x database and retention policy land in.

The same mapping as the v1 write and query endpoints (InfluxDB 3's): the default policy lands in
the database itself, another policy ``rp`` in the database ``<db>/<rp>``. ``--target-db`` /
``--db`` choose any other name.
"""
from __future__ import annotations

from persist.admission import v1_database


def policy_database(db: str, rp: str | None, is_default: bool = False) -> str:
    return db if is_default else v1_database(db, rp)
