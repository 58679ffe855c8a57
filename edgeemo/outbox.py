"""Durable event outbox: SQLite in WAL mode in the state directory.

Every event is written here, with its per-device ``seq``, before anything is sent; a row is
deleted only when the broker has acknowledged it (QoS 1 PUBACK). A broker outage, a daemon
restart or a power cut therefore loses nothing; at worst an event acknowledged just before a
crash is sent twice, and a consumer sees the repeated ``seq``. The table is bounded by count
and age; what is dropped to stay within bounds is counted, and survives restarts too.

The disk can fail under it (full, read-only, I/O errors). No storage error escapes this class:
events are then held in a bounded memory queue and still delivered, the condition is logged
once and reported by :attr:`Outbox.storage_error`, and the memory queue is written back to disk
as soon as the disk takes writes again. The WAL is checkpointed and kept small so that a small
state disk fills slowly in the first place.

``seq`` never goes back, even when the database is lost: the next number is also kept in a
small side file (``outbox.sqlite3.seq``, overwritten in place, so it can be written on a full
disk), and a damaged database found at start is moved aside for inspection and replaced by a
fresh one that continues from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgeemo.errors import OutboxError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL,
                                   payload TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('next_seq', 1), ('dropped', 0);
"""
# A small state disk (an SD card partition, a tmpfs) must not fill with WAL: checkpoint every
# 64 pages (~256 KB) and cut the WAL back to 256 KB after each checkpoint.
WAL_PRAGMAS = ("PRAGMA wal_autocheckpoint=64", "PRAGMA journal_size_limit=262144")
RETRY_S = 5.0  # while the disk refuses writes, try it again this often
MEMORY_EVENTS = 1000  # events held in memory while the disk refuses writes; oldest dropped beyond
SEQ_WIDTH = 20  # the side file: one fixed-width number, rewritten in place


@dataclass(frozen=True)
class Pending:
    seq: int
    topic: str
    payload: str


class _Damaged(Exception):
    pass


def _private_dir(d: Path) -> None:
    """The state directory holds per-person events: owner only, whatever the umask."""
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if d.stat().st_mode & 0o077:
        with contextlib.suppress(OSError):  # not ours to change (a shared directory): leave it
            d.chmod(0o700)


class Outbox:
    def __init__(
        self,
        path: Path,
        max_events: int = 10000,
        max_age_s: float = 7 * 86400,
        memory_events: int = MEMORY_EVENTS,
    ) -> None:
        self.path = path
        self.seq_path = path.with_name(path.name + ".seq")
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.memory_events = min(memory_events, max_events)
        self._lock = threading.Lock()
        self._memory: dict[int, Pending] = {}  # held while the disk refuses writes, by seq
        self._created: dict[int, float] = {}  # their creation times (written back with them)
        self._undeleted: set[int] = set()  # acknowledged, but the disk refused the DELETE
        self.storage_error: str | None = None  # why the disk is not used now, for stats
        self._retry_at = 0.0
        self._count = 0  # rows on disk, as last seen (count() must answer on a broken disk)
        self.dropped = 0
        try:
            _private_dir(path.parent)
            self._seq_fd = os.open(self.seq_path, os.O_RDWR | os.O_CREAT, 0o600)
            os.fchmod(self._seq_fd, 0o600)
            floor = self._read_seq_file()
            self._db = self._open_checked(floor)
            self._next = max(
                floor,
                self._meta("next_seq"),
                int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]) + 1,
            )
            self.dropped = self._meta("dropped")
            self._count = int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        except (sqlite3.Error, OSError) as e:
            raise OutboxError(
                f"event outbox {path} cannot be opened ({e}); check that the state directory is writable "
                f"by this user ({path.parent}) and its disk is not full"
            ) from None
        self._write_seq_file()
        self._expire(time.time())

    # --- opening, damage ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():  # sqlite would create it 0644 & ~umask
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        with contextlib.suppress(OSError):
            self.path.chmod(0o600)  # the -wal and -shm files take the database's mode
        # One connection shared under a lock: writes are tiny and rare (events, not frames).
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an accepted event survives a power cut
            for pragma in WAL_PRAGMAS:
                db.execute(pragma)
            db.executescript(SCHEMA)
            problems = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise _Damaged("; ".join(problems[:3]))
            db.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone()
        except sqlite3.DatabaseError as e:
            db.close()
            if isinstance(e, sqlite3.OperationalError):
                raise  # disk full, read-only, permissions: not damage; the caller names it
            raise _Damaged(str(e)) from None
        except _Damaged:
            db.close()
            raise
        return db

    def _open_checked(self, floor: int) -> sqlite3.Connection:
        truncated = self.path.exists() and self.path.stat().st_size == 0 and floor > 1
        try:
            db = self._connect()
        except _Damaged as e:
            return self._replace_damaged(str(e), floor)
        if truncated:
            log.error(
                "event outbox %s was found empty (truncated to 0 bytes): its undelivered events are "
                "lost; seq continues at %d. Check the state disk for errors",
                self.path, floor,
            )  # fmt: skip
        return db

    def _replace_damaged(self, problem: str, floor: int) -> sqlite3.Connection:
        """Move the damaged file aside for inspection and start a fresh outbox; seq goes on."""
        salvaged, lost = 0, "its"
        try:  # what can still be read of it: where seq had got to, how much is lost
            old = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        except sqlite3.Error:
            old = None
        if old is not None:
            with contextlib.suppress(sqlite3.Error):
                salvaged = int(old.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
            with contextlib.suppress(sqlite3.Error, TypeError):
                n, top = old.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone()
                salvaged, lost = max(salvaged, int(top or 0) + 1), f"its {n}"
            old.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(str(aside) + suffix))
        db = self._connect()
        nxt = max(floor, salvaged, 1)
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (nxt,))
        log.error(
            "event outbox %s is damaged (%s): moved it to %s for inspection and started a fresh "
            "one; %s undelivered event(s) will not be sent; seq continues at %d. Check the state "
            "disk for errors (dmesg, fsck)",
            self.path, problem, aside, lost, nxt,
        )  # fmt: skip
        return db

    def _read_seq_file(self) -> int:
        raw = os.pread(self._seq_fd, SEQ_WIDTH, 0)
        try:
            return int(raw.decode().strip() or 0)
        except ValueError:
            return 0

    def _write_seq_file(self) -> None:
        # Overwritten in place (fixed width, no new blocks), so it works on a full disk too.
        with contextlib.suppress(OSError):
            os.pwrite(self._seq_fd, f"{self._next:0{SEQ_WIDTH - 1}d}\n".encode(), 0)
            if self.storage_error:  # the database no longer records seq: this file must
                os.fsync(self._seq_fd)

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    # --- storage errors ------------------------------------------------------------------------

    def _failed(self, e: sqlite3.Error) -> None:
        """Inside the lock: the disk refused; roll back, switch to memory, say so once."""
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        self._retry_at = time.monotonic() + RETRY_S
        if self.storage_error is None:
            self.storage_error = str(e)
            log.error(
                "event outbox %s: the state disk refuses writes (%s). Events are still sent while "
                "the broker is up and held in memory (up to %d) while it is not; they are lost if "
                "the daemon stops before the disk works again. Free space on %s (df -h %s)",
                self.path, e, self.memory_events, self.path.parent, self.path.parent,
            )  # fmt: skip

    def _recover(self) -> None:
        """Inside the lock: write what memory holds back to disk, if the disk takes it now."""
        if self.storage_error is None or time.monotonic() < self._retry_at:
            return
        try:
            with contextlib.suppress(sqlite3.Error):  # a truncated WAL gives the space back
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in self._undeleted])
            self._db.executemany(
                "INSERT OR REPLACE INTO events (seq, topic, payload, created) VALUES (?, ?, ?, ?)",
                [(p.seq, p.topic, p.payload, self._created[p.seq]) for p in self._memory.values()],
            )
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (self._next,))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (self.dropped,))
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._failed(e)
            return
        log.warning(
            "event outbox %s: the state disk takes writes again; %d event(s) held in memory are "
            "stored on it", self.path, len(self._memory),
        )  # fmt: skip
        self._memory.clear()
        self._created.clear()
        self._undeleted.clear()
        self.storage_error = None
        self._count = self._db_count()

    def _db_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    # --- the API -------------------------------------------------------------------------------

    def add(self, topic: str, event: dict) -> int:
        """Give the event the next ``seq``, store it (on disk, or in memory when the disk
        refuses), and return the seq. Never raises for a storage error."""
        with self._lock:
            seq = self._next
            self._next += 1
            self._write_seq_file()
            payload = json.dumps({**event, "seq": seq})
            now = time.time()
            self._recover()
            if self.storage_error is None:
                try:
                    self._insert(seq, topic, payload, now)
                    return seq
                except sqlite3.Error:
                    with contextlib.suppress(sqlite3.Error):
                        if self._db.in_transaction:
                            self._db.execute("ROLLBACK")
                        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a full WAL: cut it, retry once
                try:
                    self._insert(seq, topic, payload, now)
                    return seq
                except sqlite3.Error as e:
                    self._failed(e)
            self._hold(Pending(seq, topic, payload), now)
        return seq

    def _insert(self, seq: int, topic: str, payload: str, now: float) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(
            "INSERT INTO events (seq, topic, payload, created) VALUES (?, ?, ?, ?)",
            (seq, topic, payload, now),
        )
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (self._next,))
        self._trim(self._db_count())
        self._db.execute("COMMIT")
        self._count = self._db_count()

    def _hold(self, item: Pending, now: float) -> None:
        self._memory[item.seq] = item
        self._created[item.seq] = now
        over = len(self._memory) - self.memory_events
        if over > 0:
            for seq in list(self._memory)[:over]:
                del self._memory[seq], self._created[seq]
            self._count_dropped(over, "memory full")

    def _trim(self, count: int) -> None:
        """Inside a transaction: drop the oldest rows beyond max_events."""
        over = count - self.max_events
        if over > 0:
            self._db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (over,)
            )
            self._count_dropped(over, "full")

    def _count_dropped(self, n: int, why: str) -> None:
        first = self.dropped == 0
        self.dropped += n
        if self.storage_error is None:
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (self.dropped,))
        if first or self.dropped % 1000 < n:
            limit = {"full": f"{self.max_events} events", "memory full": f"{self.memory_events} events"}
            log.warning(
                "event outbox %s: dropped %d undelivered event(s) (%s, limit %s); %d dropped in total. "
                "Is the MQTT broker reachable?",
                self.path, n, why, limit.get(why, f"{self.max_age_s:.0f} s"), self.dropped,
            )  # fmt: skip

    def _expire(self, now: float) -> None:
        with self._lock:
            if self.storage_error is not None:
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute("DELETE FROM events WHERE created < ?", (now - self.max_age_s,))
                if cur.rowcount > 0:
                    self._count_dropped(cur.rowcount, "too old")
                self._db.execute("COMMIT")
                self._count = self._db_count()
            except sqlite3.Error as e:
                self._failed(e)

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Pending]:
        """Unacknowledged events with seq > after_seq, oldest first (disk, then memory)."""
        self._expire(time.time())
        with self._lock:
            self._recover()
            rows: list[Pending] = []
            with contextlib.suppress(sqlite3.Error):  # unreadable: memory still answers
                rows = [
                    Pending(*r)
                    for r in self._db.execute(
                        "SELECT seq, topic, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                        (after_seq, limit + len(self._undeleted)),
                    ).fetchall()
                    if r[0] not in self._undeleted
                ]
            rows += [p for s, p in self._memory.items() if s > after_seq]
        return sorted(rows, key=lambda p: p.seq)[:limit]

    def ack(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock:
            on_disk = [s for s in seqs if self._memory.pop(s, None) is None]
            for s in seqs:
                self._created.pop(s, None)
            if not on_disk:
                return
            if self.storage_error is not None:
                self._undeleted.update(on_disk)
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in on_disk])
                self._db.execute("COMMIT")
                self._count = self._db_count()
            except sqlite3.Error as e:
                self._failed(e)
                self._undeleted.update(on_disk)  # not sent again; deleted when the disk works

    def count(self) -> int:
        with self._lock:
            return max(0, self._count - len(self._undeleted)) + len(self._memory)

    def next_seq(self) -> int:
        with self._lock:
            return self._next

    def close(self) -> None:
        with self._lock:
            self._retry_at = 0.0
            self._recover()
            if self._memory:
                log.error(
                    "event outbox %s: %d undelivered event(s) held in memory are lost: the state "
                    "disk still refuses writes (%s)", self.path, len(self._memory), self.storage_error,
                )  # fmt: skip
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # leave a small disk tidy
            self._db.close()
            with contextlib.suppress(OSError):
                os.close(self._seq_fd)
