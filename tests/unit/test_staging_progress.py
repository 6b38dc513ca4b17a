"""Progress lines of long transfers: at a bounded rate on a fake clock, with the percent
and the time left only when the total is known, and a resumed transfer's rate counting
only the bytes moved since it resumed."""
import io
import logging

import pytest

from msd_pipeline.staging.progress import MeteredReader, Progress, human_bytes, human_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="msd_pipeline.staging.progress")
    return lambda: [record.getMessage() for record in caplog.records
                    if record.name == "msd_pipeline.staging.progress"]


def test_at_most_one_line_per_interval_and_one_at_the_end(clock, lines):
    progress = Progress("Download of x", total=10_000, interval=10, clock=clock)
    for _ in range(35):
        clock.now += 1
        progress.advance(100)
    assert len(lines()) == 3  # at 10, 20 and 30 seconds
    progress.finish()
    progress.finish()
    assert len(lines()) == 4 and lines()[-1] == "Download of x: done, 3.4 KiB in 0:00:35, 100 B/s"


def test_known_total_gives_percent_rate_and_time_left(clock, lines):
    progress = Progress("Download of x", total=1000, interval=10, clock=clock)
    clock.now = 10
    progress.advance(250)
    assert lines() == ["Download of x: 250 B of 1000 B (25.0%), 25 B/s, 0:00:30 left"]


def test_unknown_total_gives_bytes_and_rate_only(clock, lines):
    progress = Progress("Copy of x", interval=10, clock=clock)
    clock.now = 10
    progress.advance(3 * 1024 ** 3)
    assert lines() == ["Copy of x: 3.0 GiB, 307.2 MiB/s"]


def test_resumed_transfer_counts_earlier_bytes_in_the_percent_not_the_rate(clock, lines):
    progress = Progress("Download of x", total=1000, done=500, interval=10, clock=clock)
    clock.now = 10
    progress.advance(250)
    assert lines() == ["Download of x: 750 B of 1000 B (75.0%), 25 B/s, 0:00:10 left"]


def test_no_bytes_yet_gives_no_time_left(clock):
    progress = Progress("Download of x", total=1000, clock=clock)
    clock.now = 5
    assert progress.line(clock.now) == "Download of x: 0 B of 1000 B (0.0%), 0 B/s"


def test_metered_reader_counts_every_byte_and_finishes_at_the_end(clock, lines):
    progress = Progress("Extraction of x", total=5000, interval=3600, clock=clock)
    reader = io.BufferedReader(MeteredReader(io.BytesIO(b"x" * 5000), progress), 1024)
    assert reader.read() == b"x" * 5000
    assert progress.done == 5000 and progress.finished
    assert lines() == ["Extraction of x: done, 4.9 KiB in 0:00:00, 0 B/s"]


@pytest.mark.parametrize("count, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                         (1.8 * 1024 ** 3, "1.8 GiB"), (2048 * 1024 ** 4, "2048.0 TiB")])
def test_human_bytes(count, text):
    assert human_bytes(count) == text


def test_human_duration():
    assert human_duration(3725.4) == "1:02:05"
