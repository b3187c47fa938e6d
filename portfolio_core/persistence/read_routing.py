"""Read routing state: which standby may serve a read, and what it must have replayed.

No I/O here (``portfolio_core.replicas`` runs the queries); this module holds
what the stores remember between calls and decides from what a standby
reports:

* :class:`ReadToken`: a primary WAL position (LSN). A standby whose
  ``pg_last_wal_replay_lsn()`` has reached it shows every transaction that
  had committed on the primary when the token was taken. Its ``str`` form is
  PostgreSQL's own (``16/B374D848``): fit for an HTTP header.
* :class:`ReadPolicy`: the bounds (lag, read-your-writes wait, how long a
  failed standby is left alone).
* :class:`ReadRouter`: per store, thread-safe: the highest token of the
  store's own commits, the standbys in turn, and those left alone for now.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from portfolio_core.errors import ValidationError
from portfolio_core.units import Seconds

EngineT = TypeVar("EngineT")

_LSN: Final = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")

__all__ = ["ReadPolicy", "ReadRouter", "ReadToken", "StandbyStatus", "Verdict", "verdict"]


@dataclass(frozen=True, order=True)
class ReadToken:
    """A primary WAL position: reads holding it see every commit made before it was taken.

    ``PortfolioStore.last_commit_token()`` gives one; pass it (or its ``str``)
    as ``read_token=`` to a read in another process or request.
    """

    lsn: int

    def __str__(self) -> str:
        return f"{self.lsn >> 32:X}/{self.lsn & 0xFFFFFFFF:X}"

    @classmethod
    def parse(cls, value: object, field: str = "read_token") -> ReadToken:
        """The token written ``X/Y`` (PostgreSQL's pg_lsn text); ValidationError otherwise."""
        if isinstance(value, ReadToken):
            return value
        match = _LSN.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise ValidationError(field, value, "must be a WAL position such as '16/B374D848'")
        return cls((int(match.group(1), 16) << 32) | int(match.group(2), 16))


def as_read_token(value: ReadToken | str | None) -> ReadToken | None:
    """``value`` as a ReadToken (None stays None); ValidationError on anything else."""
    return None if value is None else ReadToken.parse(value)


@dataclass(frozen=True)
class ReadPolicy:
    """How reads use the standbys.

    ``max_lag``: a standby further behind than this (seconds since the last
    transaction it replayed, while it has WAL received and not replayed, or
    is not streaming) is not used. ``replay_wait``: how long a read waits for
    a standby to replay a token before it goes to the primary.
    ``poll_interval``: how often it looks meanwhile. ``retry_standby_after``:
    a standby that failed (down, lagging, or too slow to reach a token) is
    left alone this long, so that a dead one is not tried on every read.
    ``read_your_writes``: reads wait for the store's own last commit.
    """

    max_lag: Seconds = 5.0
    replay_wait: Seconds = 0.5
    poll_interval: Seconds = 0.01
    retry_standby_after: Seconds = 5.0
    read_your_writes: bool = True

    def __post_init__(self) -> None:
        for name in ("max_lag", "replay_wait", "poll_interval", "retry_standby_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationError(name, value, "must be a number of seconds")
            if not math.isfinite(value) or value < 0:
                raise ValidationError(name, value, "must be finite and not negative")
        if self.poll_interval <= 0:
            raise ValidationError("poll_interval", self.poll_interval, "must be positive")


@dataclass(frozen=True)
class StandbyStatus:
    """What a read engine's server reports before a read (``replicas.STATUS_QUERY``)."""

    in_recovery: bool
    """False: the server is a primary (everything committed on it is visible)."""
    applied: ReadToken | None
    """The WAL position visible there (replayed on a standby); None if unknown."""
    lag: Seconds | None
    """How far behind it is (0 when caught up with what it received); None: unknown."""


Verdict = Literal["read", "wait", "lagging"]
"""``read``: serve the read there; ``wait``: the token is not replayed yet;
``lagging``: beyond ``max_lag`` (or unknown): go elsewhere."""


def verdict(status: StandbyStatus, token: ReadToken | None, policy: ReadPolicy) -> Verdict:
    """May a server in ``status`` serve a read that needs ``token``?"""
    if status.in_recovery and (status.lag is None or status.lag > policy.max_lag):
        return "lagging"
    if token is not None and (status.applied is None or status.applied < token):
        return "wait"
    return "read"


class ReadRouter(Generic[EngineT]):
    """A store's read engines, the token of its own last commit, and who is left alone.

    Thread-safe (one store is shared by many threads or tasks); the lock only
    guards this bookkeeping, never a database operation.
    """

    def __init__(
        self,
        engines: Sequence[EngineT],
        policy: ReadPolicy | None = None,
        *,
        clock: Callable[[], Seconds] = time.monotonic,
    ) -> None:
        self.engines = tuple(engines)
        self.policy = policy or ReadPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._token: ReadToken | None = None
        self._token_unknown = False
        self._unknown_commits = 0
        self._next = 0
        self._left_alone_until: dict[int, Seconds] = {}
        self._counts = {"standby_reads": 0, "primary_reads": 0, "standby_failures": 0}

    def note_commit(self, token: ReadToken | None, seen: int | None = None) -> None:
        """Remember a commit of the store: its token, or None if it could not be read.

        Tokens only grow (the highest wins, whatever order threads report
        in). An unknown one sends the store's reads to the primary until a
        token is known again (:meth:`token_needed`). ``seen`` is
        :meth:`unknown_commits` as read before ``token`` was: if a commit of
        unknown outcome was reported since, it may lie past ``token``, which
        is then kept without ending the wait for a newer one.
        """
        with self._lock:
            if token is None:
                self._token_unknown = True
                self._unknown_commits += 1
                return
            if seen is None or seen == self._unknown_commits:
                self._token_unknown = False
            if self._token is None or token > self._token:
                self._token = token

    def unknown_commits(self) -> int:
        """How many commits of unknown outcome were noted (read before a token, see note_commit)."""
        with self._lock:
            return self._unknown_commits

    def last_commit_token(self) -> ReadToken | None:
        """The highest token of the store's own commits (None before the first)."""
        with self._lock:
            return self._token

    def must_learn_token(self) -> bool:
        """Whether a commit's token could not be read and reads must wait for it (RYW).

        Until a token is learned again (any token read from the primary after
        that commit covers it), the store's reads go to the primary.
        """
        with self._lock:
            return self._token_unknown and self.policy.read_your_writes

    def token_needed(self, explicit: ReadToken | None) -> ReadToken | None:
        """What a read must see: the higher of ``explicit`` and the store's own (if RYW)."""
        own = self.last_commit_token() if self.policy.read_your_writes else None
        if own is None or (explicit is not None and explicit > own):
            return explicit
        return own

    def candidates(self) -> list[EngineT]:
        """The standbys to try, a different one first each call, minus those left alone."""
        now = self._clock()
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % max(len(self.engines), 1)
            order = [(start + offset) % len(self.engines) for offset in range(len(self.engines))]
            return [
                self.engines[index]
                for index in order
                if self._left_alone_until.get(index, 0.0) <= now
            ]

    def leave_alone(self, engine: EngineT) -> None:
        """Do not try ``engine`` for ``policy.retry_standby_after`` seconds."""
        until = self._clock() + self.policy.retry_standby_after
        with self._lock:
            self._counts["standby_failures"] += 1
            for index, candidate in enumerate(self.engines):
                if candidate is engine:
                    self._left_alone_until[index] = until

    def count(self, where: Literal["standby_reads", "primary_reads"]) -> None:
        """Count one read served by a standby or by the primary."""
        with self._lock:
            self._counts[where] += 1

    def metrics(self) -> dict[str, int]:
        """``standby_reads``, ``primary_reads``, ``standby_failures`` so far (a copy)."""
        with self._lock:
            return dict(self._counts)
