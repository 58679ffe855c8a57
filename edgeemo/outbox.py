"""Durable event outbox: SQLite in WAL mode in the state directory.

Every event is written here, with its per-device ``seq``, before anything is sent; a row is
deleted only when the broker has acknowledged it (QoS 1 PUBACK). A broker outage, a daemon
restart or a power cut therefore loses nothing; at worst an event acknowledged just before a
crash is sent twice, and a consumer sees the repeated ``seq``. The table is bounded by count
and age; what is dropped to stay within bounds is counted, and survives restarts too.
"""

from __future__ import annotations

import json
import logging
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


@dataclass(frozen=True)
class Pending:
    seq: int
    topic: str
    payload: str


class Outbox:
    def __init__(self, path: Path, max_events: int = 10000, max_age_s: float = 7 * 86400) -> None:
        self.path = path
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One connection shared under a lock: writes are tiny and rare (events, not frames).
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an accepted event survives a power cut
            self._db.executescript(SCHEMA)
            self._db.execute("PRAGMA quick_check")
        except (sqlite3.Error, OSError) as e:
            raise OutboxError(
                f"event outbox {path} cannot be opened ({e}); check that the state directory is "
                "writable, or move the damaged file away (its unsent events are lost)"
            ) from None
        self.dropped = self._meta("dropped")
        self._expire(time.time())

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def add(self, topic: str, event: dict) -> int:
        """Give the event the next ``seq``, store it durably, and return the seq."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seq = self._meta("next_seq")
                payload = json.dumps({**event, "seq": seq})
                self._db.execute(
                    "INSERT INTO events (seq, topic, payload, created) VALUES (?, ?, ?, ?)",
                    (seq, topic, payload, time.time()),
                )
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
                self._trim()
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"event outbox {self.path}: cannot store an event ({e})") from None
        return seq

    def _trim(self) -> None:
        """Inside a transaction: drop the oldest rows beyond max_events."""
        over = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0] - self.max_events
        if over > 0:
            self._db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (over,)
            )
            self._count_dropped(over, "full")

    def _count_dropped(self, n: int, why: str) -> None:
        first = self.dropped == 0
        self.dropped += n
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (self.dropped,))
        if first or self.dropped % 1000 < n:
            limit = f"{self.max_events} events" if why == "full" else f"{self.max_age_s:.0f} s"
            log.warning(
                "event outbox %s: dropped %d undelivered event(s) (%s, limit %s); %d dropped in total. "
                "Is the MQTT broker reachable?",
                self.path, n, why, limit, self.dropped,
            )  # fmt: skip

    def _expire(self, now: float) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM events WHERE created < ?", (now - self.max_age_s,))
            if cur.rowcount > 0:
                self._count_dropped(cur.rowcount, "too old")

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Pending]:
        """Unacknowledged events with seq > after_seq, oldest first."""
        self._expire(time.time())
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [Pending(*r) for r in rows]

    def ack(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock:
            self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def next_seq(self) -> int:
        with self._lock:
            return self._meta("next_seq")

    def close(self) -> None:
        with self._lock:
            self._db.close()
