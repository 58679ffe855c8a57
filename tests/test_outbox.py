"""The durable outbox on its own: seq, persistence, bounds, damage."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import fill_disk

from edgeemo import outbox as outbox_module
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


def _one_error(caplog: pytest.LogCaptureFixture) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    return errors[0]


def test_a_file_that_is_no_database_is_moved_aside_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "o.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR):
        box = Outbox(bad)
    assert "is damaged" in _one_error(caplog) and "moved it to" in _one_error(caplog)
    aside = list(tmp_path.glob("o.sqlite3.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")  # kept for inspection
    assert box.add("t", _ev(1)) == 1


def test_a_damaged_page_is_found_at_start_and_seq_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    for i in range(300):  # several pages of events
        box.add("t", {**_ev(i), "pad": "x" * 200})
    box.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    raw[5 * page : 7 * page] = b"\xa5" * (2 * page)  # garbage over two data pages
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.ERROR):
        box = Outbox(path)  # before: an uncaught sqlite3.DatabaseError, exit 1 on every start
    line = _one_error(caplog)
    assert "is damaged" in line and "seq continues at 301" in line and "damaged-" in line
    assert box.add("t", _ev(301)) == 301  # consumers de-duplicate by seq: it must not go back
    assert [p.seq for p in box.pending()] == [301]


def test_an_outbox_truncated_to_nothing_does_not_restart_seq(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    for i in range(5):
        box.add("t", _ev(i))
    box.close()
    path.write_bytes(b"")
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    with caplog.at_level(logging.ERROR):
        box = Outbox(path)
    assert "truncated to 0 bytes" in _one_error(caplog)
    assert box.add("t", _ev(6)) == 6  # before: 1


def test_state_dir_and_outbox_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        box = Outbox(tmp_path / "state" / "o.sqlite3")
        box.add("t", _ev(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    files = list((tmp_path / "state").iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), [
        (f.name, oct(f.stat().st_mode)) for f in files
    ]


def test_a_full_disk_keeps_events_flowing_in_memory_and_back_to_disk(
    small_disk: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "RETRY_S", 0.0)
    box = Outbox(small_disk / "state" / "o.sqlite3")
    filler = fill_disk(small_disk, leave=16 * 1024)
    seqs, acked = [], []
    with caplog.at_level(logging.WARNING):
        for i in range(400):  # before: OutboxError from add(), sqlite3.OperationalError from ack()
            seqs.append(box.add("t", {**_ev(i), "pad": "x" * 300}))
            if i % 2:  # the broker acknowledges every other one
                box.ack([seqs[-1]])
                acked.append(seqs[-1])
    assert seqs == list(range(1, 401))
    assert box.storage_error and "full" in box.storage_error
    waiting = [s for s in seqs if s not in acked]
    assert [p.seq for p in box.pending(limit=1000)] == waiting  # nothing lost, nothing repeated
    assert box.count() == len(waiting)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Free space on" in errors[0]  # once, with what to do

    filler.unlink()  # space returns: memory goes back to disk
    assert [p.seq for p in box.pending(limit=1000)] == waiting
    assert box.storage_error is None
    box.close()
    again = Outbox(small_disk / "state" / "o.sqlite3")
    assert [p.seq for p in again.pending(limit=1000)] == waiting
    assert again.add("t", _ev(401)) == 401


def test_a_restart_on_a_full_disk_keeps_seq_and_the_wal_stays_small(small_disk: Path) -> None:
    path = small_disk / "state" / "o.sqlite3"
    box = Outbox(path)
    for i in range(2000):
        box.ack([box.add("t", {**_ev(i), "pad": "x" * 300})])
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size <= 512 * 1024  # checkpointed and cut back
    assert box.storage_error is None  # 2000 delivered events never filled a 1 MB disk
    filler = fill_disk(small_disk, leave=0)
    for i in range(3):
        box.add("t", _ev(i))  # held in memory; only the side file records seq now
    box.close()
    again = Outbox(path)  # the same full disk
    assert again.add("t", _ev(9)) == 2004  # seq never goes back, even though nothing was stored
    filler.unlink()


def test_unwritable_state_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="state directory is writable"):
        Outbox(blocker / "sub" / "o.sqlite3")
