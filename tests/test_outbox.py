"""The durable outbox on its own: seq, persistence, bounds, damage."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from edgeemo.outbox import Outbox, OutboxError


def _ev(n: int) -> dict:
    return {"id": f"id-{n}", "type": "face_entered", "n": n}


def test_seq_is_consecutive_and_survives_a_restart(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    assert [box.add("t", _ev(i)) for i in range(3)] == [1, 2, 3]
    box.ack([1, 2, 3])
    box.close()
    box = Outbox(tmp_path / "o.sqlite3")  # delivered and deleted, yet numbering goes on
    assert box.add("t", _ev(4)) == 4 and box.next_seq() == 5


def test_pending_is_ordered_and_carries_seq_and_id(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    for i in range(5):
        box.add(f"topic/{i}", _ev(i))
    box.ack([2])
    items = box.pending(after_seq=0, limit=10)
    assert [p.seq for p in items] == [1, 3, 4, 5]
    assert [p.seq for p in box.pending(after_seq=3, limit=1)] == [4]
    body = json.loads(items[1].payload)
    assert body["seq"] == 3 and body["id"] == "id-2" and items[1].topic == "topic/2"


def test_undelivered_events_survive_a_crash(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.add("t", _ev(1))
    del box  # no close: as after kill -9 or a power cut (synchronous=FULL, WAL)
    again = Outbox(tmp_path / "o.sqlite3")
    assert [p.seq for p in again.pending()] == [1]


def test_full_outbox_drops_the_oldest_and_counts_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_events=10)
    with caplog.at_level(logging.WARNING):
        for i in range(25):
            box.add("t", _ev(i))
    assert box.count() == 10 and box.dropped == 15
    assert [p.seq for p in box.pending(limit=100)] == list(range(16, 26))
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1 and "limit 10 events" in warnings[0]  # once, not per event
    box.close()
    assert Outbox(tmp_path / "o.sqlite3", max_events=10).dropped == 15  # the count survives


def test_old_events_expire(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_age_s=0.2)
    box.add("t", _ev(1))
    time.sleep(0.3)
    box.add("t", _ev(2))
    assert [p.seq for p in box.pending()] == [2] and box.dropped == 1


def test_damaged_database_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "o.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match=r"o\.sqlite3 cannot be opened.*move the damaged file away"):
        Outbox(bad)


def test_unwritable_state_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="state directory is writable"):
        Outbox(blocker / "sub" / "o.sqlite3")
