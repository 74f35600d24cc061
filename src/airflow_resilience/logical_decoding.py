"""PostgreSQL logical decoding output, parsed (pure; no database, no Airflow).

``pg_logical_slot_peek_changes(slot, NULL, n, 'include-xids', '1', 'skip-empty-xacts', '1')`` with the
built-in ``test_decoding`` plugin returns rows ``(lsn, xid, data)``::

    0/1949B90  726  BEGIN 726
    0/1949B90  726  table public.items: INSERT: id[integer]:1 name[text]:'a b' qty[integer]:null
    0/1949DA0  727  table public.items: DELETE: id[integer]:2
    0/1949DE0  727  table public.items: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:10 ...
    0/1949D40  726  COMMIT 726

The LSN of a ``COMMIT`` row is the end of that transaction's commit record: advancing the slot there
(``pg_replication_slot_advance``) acknowledges that transaction and nothing after it. A transaction is
returned whole or not at all, so :class:`Transaction` is the unit of publishing and of acknowledging.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_resilience.watermark import lsn_to_int


class DecodingFormatError(ValueError):
    """A row of decoding output that this parser does not understand (it names the row)."""


@dataclass(frozen=True)
class Change:
    """One row change. ``columns`` is the new row (INSERT, UPDATE) or the key / old row (DELETE)."""

    lsn: str
    table: str
    op: str  # INSERT, UPDATE, DELETE, TRUNCATE
    columns: dict[str, Any]
    #: For an UPDATE that changed the key: the old key columns.
    old_key: dict[str, Any] | None = None


@dataclass(frozen=True)
class Transaction:
    """A committed transaction: its changes, in order, and the LSN that acknowledges it."""

    xid: int
    commit_lsn: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def position(self) -> int:
        return lsn_to_int(self.commit_lsn)


_HEADER = re.compile(r"^table (?P<table>.+?): (?P<op>INSERT|UPDATE|DELETE|TRUNCATE):(?P<rest>.*)$", re.S)
_COLUMN = re.compile(r'\s*(?P<name>"(?:[^"]|"")*"|[^\[\s]+)\[(?P<type>[^\]]+)\]:')
_INTEGER_TYPES = {"integer", "bigint", "smallint", "oid"}
_FLOAT_TYPES = {"real", "double precision"}


def _value(text: str, pos: int, type_: str) -> tuple[Any, int]:
    if text.startswith("'", pos):
        out, i = [], pos + 1
        while i < len(text):
            if text[i] == "'":
                if text.startswith("''", i):
                    out.append("'")
                    i += 2
                    continue
                return "".join(out), i + 1
            out.append(text[i])
            i += 1
        raise DecodingFormatError(f"unterminated quoted value at {pos}: {text[pos:pos + 80]!r}")
    end = text.find(" ", pos)
    end = len(text) if end < 0 else end
    raw = text[pos:end]
    if raw == "null":
        return None, end
    if type_ in _INTEGER_TYPES:
        return int(raw), end
    if type_ in _FLOAT_TYPES:
        return float(raw), end
    if type_ == "boolean":
        return raw == "true", end
    return raw, end  # numeric and others stay text: exact


def parse_columns(text: str) -> dict[str, Any]:
    """``id[integer]:1 name[text]:'a b'`` -> ``{"id": 1, "name": "a b"}``."""
    columns: dict[str, Any] = {}
    pos = 0
    while pos < len(text) and text[pos:].strip():
        m = _COLUMN.match(text, pos)
        if m is None:
            raise DecodingFormatError(f"cannot read a column at {pos} of {text[:200]!r}")
        name = m.group("name")
        if name.startswith('"'):
            name = name[1:-1].replace('""', '"')
        value, pos = _value(text, m.end(), m.group("type"))
        columns[name] = value
    return columns


def parse_change(lsn: str, data: str) -> Change:
    m = _HEADER.match(data)
    if m is None:
        raise DecodingFormatError(f"not a test_decoding change row at {lsn}: {data[:200]!r}")
    table, op, rest = m.group("table"), m.group("op"), m.group("rest").strip()
    if op == "TRUNCATE":
        return Change(lsn, table, op, {})
    if rest == "(no-tuple-data)":
        raise DecodingFormatError(
            f"{table} {op} at {lsn} carries no key: the table has REPLICA IDENTITY NOTHING (or no primary key); "
            "give it a primary key or ALTER TABLE ... REPLICA IDENTITY FULL"
        )
    old_key = None
    if op == "UPDATE" and rest.startswith("old-key:"):
        old, _, new = rest[len("old-key:"):].partition(" new-tuple:")
        old_key, rest = parse_columns(old.strip()), new.strip()
    return Change(lsn, table, op, parse_columns(rest), old_key)


def parse_test_decoding(rows: Iterable[tuple[str, Any, str]]) -> list[Transaction]:
    """Group ``(lsn, xid, data)`` rows into transactions; a trailing open transaction is an error."""
    out: list[Transaction] = []
    current: list[Change] | None = None
    xid = None
    for lsn, row_xid, data in rows:
        lsn = str(lsn)
        if data.startswith("BEGIN"):
            current, xid = [], int(row_xid) if row_xid is not None else int(data.split()[1])
        elif data.startswith("COMMIT"):
            if current is None:
                raise DecodingFormatError(f"COMMIT without BEGIN at {lsn}")
            out.append(Transaction(int(xid), lsn, tuple(current)))
            current = None
        else:
            if current is None:
                raise DecodingFormatError(f"change outside a transaction at {lsn}: {data[:120]!r}")
            current.append(parse_change(lsn, data))
    if current is not None:
        raise DecodingFormatError(f"transaction {xid} has no COMMIT in the output (the peek was cut mid-transaction)")
    return out
