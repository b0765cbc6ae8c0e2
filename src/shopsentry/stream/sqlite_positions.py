"""Positions kept in a SQLite table, for sinks that are SQLite files (the alert read
model, the notifier's ledger): read and written inside the sink's own transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from shopsentry.bus.base import TopicPartition


def positions_table(table: str) -> str:
    """The DDL of a positions table (next offset to read per partition)."""
    return (
        f"create table if not exists {table} ("
        " topic text not null, partition integer not null, next_offset integer not null,"
        " primary key (topic, partition));"
    )


def read_positions(db: sqlite3.Connection, table: str) -> dict[TopicPartition, int]:
    rows = db.execute(f"select topic, partition, next_offset from {table}").fetchall()
    return {TopicPartition(t, p): o for t, p, o in rows}


def write_positions(
    db: sqlite3.Connection, table: str, positions: Mapping[TopicPartition, int]
) -> None:
    db.executemany(
        f"insert into {table} (topic, partition, next_offset) values (?, ?, ?)"
        " on conflict (topic, partition) do update set next_offset = excluded.next_offset",
        [(tp.topic, tp.partition, offset) for tp, offset in positions.items()],
    )
