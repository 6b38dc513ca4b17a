"""Progress of a long transfer in the task log, at a bounded rate: at most one line every
``PROGRESS_INTERVAL_SECONDS`` and one at the end, each with the bytes done, the percent
and the time left when the total is known, and the rate so far.

    Download of http://host/millionsongsubset.tar.gz: 512.0 MiB of 1.8 GiB (27.8%), 42.7 MiB/s, 0:00:31 left
    Download of http://host/millionsongsubset.tar.gz: done, 1.8 GiB in 0:00:44, 41.9 MiB/s
"""
import datetime
import io
import logging
import time
from typing import Callable, Optional

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 30.0
BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(count: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    unit = 0
    while count >= 1024 and unit < len(BYTE_UNITS) - 1:
        count /= 1024
        unit += 1
    return "{:.0f} B".format(count) if unit == 0 else "{:.1f} {}".format(count, BYTE_UNITS[unit])


def human_duration(seconds: float) -> str:
    """``3725.4`` → ``1:02:05``."""
    return str(datetime.timedelta(seconds=round(seconds)))


class Progress:
    """Bytes of one transfer, logged at most every ``interval`` seconds (default
    ``PROGRESS_INTERVAL_SECONDS``) and once by ``finish``. ``done`` starts at the bytes
    an earlier run already moved (a resumed download): they count towards the percent,
    not towards the rate."""

    def __init__(self, label: str, total: Optional[int] = None, done: int = 0,
                 interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.done = done
        self.finished = False
        self._resumed_at = done
        self._interval = PROGRESS_INTERVAL_SECONDS if interval is None else interval
        self._clock = clock
        self._started = self._last_line = clock()

    def advance(self, count: int) -> None:
        self.done += count
        now = self._clock()
        if now - self._last_line >= self._interval:
            self._last_line = now
            log.info("%s", self.line(now))

    def finish(self) -> None:
        """The closing line (once): the bytes done, the time taken and the rate."""
        if self.finished:
            return
        self.finished = True
        elapsed = self._clock() - self._started
        log.info("%s: done, %s in %s, %s/s", self.label, human_bytes(self.done),
                 human_duration(elapsed), human_bytes(self._rate(elapsed)))

    def line(self, now: float) -> str:
        elapsed = now - self._started
        rate = self._rate(elapsed)
        parts = [human_bytes(self.done)]
        if self.total:
            parts = ["{} of {} ({:.1f}%)".format(human_bytes(self.done), human_bytes(self.total),
                                                 100.0 * self.done / self.total)]
        parts.append("{}/s".format(human_bytes(rate)))
        if self.total and rate > 0:
            parts.append("{} left".format(human_duration(max(self.total - self.done, 0) / rate)))
        return "{}: {}".format(self.label, ", ".join(parts))

    def _rate(self, elapsed: float) -> float:
        return (self.done - self._resumed_at) / elapsed if elapsed > 0 else 0.0


class MeteredReader(io.RawIOBase):
    """A raw stream reading through ``raw`` that counts every byte into ``progress``
    and finishes it at the end of the stream."""

    def __init__(self, raw: io.RawIOBase, progress: Progress) -> None:
        super().__init__()
        self.raw = raw
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        if count:
            self.progress.advance(count)
        else:
            self.progress.finish()
        return count
