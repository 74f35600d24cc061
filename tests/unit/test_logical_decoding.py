"""Parsing of test_decoding output (rows as PostgreSQL 15 printed them on this machine)."""

from __future__ import annotations

import pytest

from airflow_resilience.logical_decoding import (
    DecodingFormatError,
    Transaction,
    parse_change,
    parse_columns,
    parse_test_decoding,
)

ROWS = [
    ("0/1949B90", "726", "BEGIN 726"),
    ("0/1949B90", "726", "table public.items: INSERT: id[integer]:1 name[text]:'a b' qty[integer]:1 "
     "at[timestamp with time zone]:'2026-11-26 01:20:18.353736+00' flag[boolean]:true"),
    ("0/1949C80", "726", "table public.items: INSERT: id[integer]:2 name[text]:'it''s' qty[integer]:null "
     "at[timestamp with time zone]:'2026-11-26 01:20:18.353736+00' flag[boolean]:false"),
    ("0/1949D40", "726", "COMMIT 726"),
    ("0/1949D40", "727", "BEGIN 727"),
    ("0/1949DA0", "727", "table public.items: DELETE: id[integer]:2"),
    ("0/1949DE0", "727", "table public.items: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:10 "
     "name[text]:'a b' qty[integer]:5 at[timestamp with time zone]:'2026-11-26 01:20:18.353736+00' flag[boolean]:true"),
    ("0/1949EB8", "727", "COMMIT 727"),
]


def test_transactions_grouped_with_commit_lsn():
    txns = parse_test_decoding(ROWS)
    assert [(t.xid, t.commit_lsn, len(t.changes)) for t in txns] == [(726, "0/1949D40", 2), (727, "0/1949EB8", 2)]
    first = txns[0].changes[0]
    assert first.op == "INSERT" and first.table == "public.items"
    assert first.columns == {"id": 1, "name": "a b", "qty": 1, "at": "2026-11-26 01:20:18.353736+00", "flag": True}
    assert txns[0].changes[1].columns["name"] == "it's" and txns[0].changes[1].columns["qty"] is None
    delete, moved = txns[1].changes
    assert delete.op == "DELETE" and delete.columns == {"id": 2}
    assert moved.op == "UPDATE" and moved.old_key == {"id": 1} and moved.columns["id"] == 10
    assert txns[0].position < txns[1].position


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a[integer]:1", {"a": 1}),
        ("a[bigint]:-5 b[real]:1.5 c[numeric]:10.10", {"a": -5, "b": 1.5, "c": "10.10"}),
        ("\"Odd Name\"[text]:'x y' b[text]:''", {"Odd Name": "x y", "b": ""}),
        ("a[text]:'quote '' and space'", {"a": "quote ' and space"}),
        ("a[character varying]:null", {"a": None}),
    ],
)
def test_columns(text, expected):
    assert parse_columns(text) == expected


@pytest.mark.parametrize(
    "rows, match",
    [
        ([("0/1", "1", "BEGIN 1")], "no COMMIT"),
        ([("0/1", "1", "COMMIT 1")], "COMMIT without BEGIN"),
        ([("0/1", "1", "table public.t: INSERT: a[integer]:1")], "outside a transaction"),
        ([("0/1", "1", "BEGIN 1"), ("0/2", "1", "something else")], "not a test_decoding change row"),
        ([("0/1", "1", "BEGIN 1"), ("0/2", "1", "table public.t: DELETE: (no-tuple-data)")], "REPLICA IDENTITY"),
        ([("0/1", "1", "BEGIN 1"), ("0/2", "1", "table public.t: INSERT: a[text]:'open")], "unterminated"),
    ],
)
def test_unreadable_output_is_named(rows, match):
    with pytest.raises(DecodingFormatError, match=match):
        parse_test_decoding(rows)


def test_truncate():
    assert parse_change("0/5", "table public.t: TRUNCATE: (no-flags)").op == "TRUNCATE"


def test_empty_output():
    assert parse_test_decoding([]) == []
    assert Transaction(1, "0/10").changes == ()
