"""msdlib.io.sources.read_ahead: files read by a bounded pool ahead of the caller, in order,
each read error kept with its own file."""
import threading

import pytest

from msdlib.io.sources import read_ahead


class RecordingReader:
    """Returns ``b"<path>"``; counts reads started, fails the paths in ``failing``."""

    def __init__(self, failing=(), gate=None):
        self.failing = set(failing)
        self.gate = gate
        self.started = []
        self.threads = set()
        self._lock = threading.Lock()

    def read(self, path):
        with self._lock:
            self.started.append(path)
            self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if path in self.failing:
            raise OSError("cannot read " + path)
        return path.encode()


PATHS = ["song-{}".format(index) for index in range(20)]


def test_files_come_back_in_order_with_their_bytes():
    reader = RecordingReader()
    got = [(path, song_file.read(path)) for path, song_file in read_ahead(reader, PATHS, 4)]

    assert got == [(path, path.encode()) for path in PATHS]


def test_reads_overlap_up_to_the_window():
    # Four reads that each wait for the other three: only concurrent reads get past.
    gate = threading.Barrier(4)
    reader = RecordingReader(gate=gate)
    files = read_ahead(reader, PATHS[:8], 4)

    path, song_file = next(files)
    assert song_file.read(path) == b"song-0"
    assert len(reader.threads) >= 4 and not gate.broken


def test_at_most_in_flight_files_are_read_or_held():
    reader = RecordingReader()
    consumed = 0
    for path, song_file in read_ahead(reader, PATHS, 3):
        song_file.read(path)
        # The file in hand is one of the three; the pool never runs further ahead.
        assert len(reader.started) - consumed <= 3
        consumed += 1
    assert consumed == len(PATHS)


def test_a_read_error_stays_with_its_file():
    reader = RecordingReader(failing={"song-3", "song-11"})
    outcomes = {}
    for path, song_file in read_ahead(reader, PATHS, 4):
        try:
            outcomes[path] = song_file.read(path)
        except OSError as exc:
            outcomes[path] = str(exc)

    assert outcomes["song-3"] == "cannot read song-3"
    assert outcomes["song-11"] == "cannot read song-11"
    assert outcomes["song-4"] == b"song-4" and len(outcomes) == len(PATHS)


def test_one_in_flight_reads_in_the_callers_thread_when_asked():
    reader = RecordingReader()
    files = read_ahead(reader, PATHS, 1)
    path, song_file = next(files)

    assert reader.started == []
    assert song_file.read(path) == b"song-0"
    assert reader.threads == {threading.current_thread().name}


def test_stopping_early_starts_no_more_reads():
    reader = RecordingReader()
    files = read_ahead(reader, PATHS, 4)
    for _ in range(2):
        path, song_file = next(files)
        song_file.read(path)
    files.close()

    assert len(reader.started) <= 2 + 4


@pytest.mark.parametrize("value", [0, -1])
def test_read_ahead_below_one_is_a_config_error(value):
    from msdlib.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="read_ahead"):
        load_config(overrides={"ingest.read_ahead": value})
