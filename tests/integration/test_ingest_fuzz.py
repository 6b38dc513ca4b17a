"""Fuzz: the ingest job on damaged song files mixed with good ones (one local Spark run,
then a re-run). Real MSD songs from ../shared/msd when present, else generated ones;
the damage is seeded (tests/fuzz_support.py), so a failure reproduces.

Asserted: the job never crashes; every listed path is accounted for exactly once, as a
song (one of its document's ``source.paths``) or an error record; the summary adds up;
outcomes that are certain (missing segments_timbre, impossible years, folders named
*.h5, ...) are the documented ones; a re-run changes nothing.
"""
import collections
import random
import shutil
from pathlib import Path

import pymongo
import pytest

from fuzz_support import DUPLICATE_OUTCOME, ERROR_OUTCOME, SONG_OUTCOME, build_corpus
from msd_pipeline.staging.generator import generate_songs
from msdlib.config import load_config
from msdlib.ingest import list_ingest_paths, run_ingest
from project_paths import REAL_TRACKS

SEED = 20260110
GOOD_FILES = 20
DAMAGED_FILES = 80


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``(source folder, good paths, damaged cases)``: the folder holds all of them."""
    root = tmp_path_factory.mktemp("fuzz")
    good_dir = root / "good"
    real = sorted(REAL_TRACKS.glob("*/*/*/*.h5"))
    if real:
        good_dir.mkdir()
        for path in random.Random(SEED).sample(real, GOOD_FILES):
            shutil.copyfile(path, good_dir / path.name)
    else:
        generate_songs(str(good_dir), GOOD_FILES, seed=SEED % 1000)
    good = sorted(good_dir.rglob("*.h5"))
    cases = build_corpus(good, root / "damaged", SEED, DAMAGED_FILES)
    return root, [str(path) for path in good], cases


def test_corpus_is_reproducible_from_its_seed(tmp_path, corpus):
    _, good, cases = corpus
    again = build_corpus([Path(path) for path in good], tmp_path / "again", SEED,
                         DAMAGED_FILES)
    assert [(Path(c.path).name, c.mutation, c.expect) for c in again] == \
        [(Path(c.path).name, c.mutation, c.expect) for c in cases]
    for first, second in zip(cases, again):
        if Path(first.path).is_file() and not Path(first.path).is_symlink():
            assert Path(first.path).read_bytes() == Path(second.path).read_bytes()


def test_fuzzed_files_never_crash_the_job_and_every_path_is_accounted_for(
        local_spark, mongo_uri, mongo_db_name, corpus):
    root, good, cases = corpus
    config = load_config(overrides={
        "mongo.database": mongo_db_name, "ingest.source": str(root),
        "ingest.batch_size": 7, "ingest.max_failed_fraction": 1.0})
    paths = list_ingest_paths(config)
    assert set(paths) == set(good) | {case.path for case in cases}

    summary = run_ingest(local_spark, config, "fuzz-1", mongo_uri, paths)

    client = pymongo.MongoClient(mongo_uri)
    try:
        db = client[mongo_db_name]
        state = accounted_state(db)
        assert_accounted_once(paths, state, summary)
        assert_expected_outcomes(cases, good, state, db)
        print("fuzz: {} paths, {} songs, {} duplicate paths, reasons {}".format(
            summary["files_seen"], summary["files_ingested"], summary["files_duplicate"],
            summary["failure_reasons"]))

        rerun = run_ingest(local_spark, config, "fuzz-2", mongo_uri, paths)
        assert_accounted_once(paths, accounted_state(db), rerun)
        assert accounted_state(db) == state
        for key in ("files_seen", "files_ingested", "files_duplicate", "files_failed",
                    "failure_reasons", "songs_by_year_status"):
            assert rerun[key] == summary[key], key
    finally:
        client.close()


def accounted_state(db):
    """``{"songs": {track id: sorted paths}, "errors": {path: reason}}``."""
    return {
        "songs": {doc["_id"]: sorted(doc["source"]["paths"])
                  for doc in db.songs.find({}, {"source.paths": 1})},
        "errors": {doc["_id"]: doc["reason"] for doc in db.ingest_errors.find({}, {"reason": 1})},
    }


def assert_accounted_once(paths, state, summary):
    song_paths = [path for song_paths in state["songs"].values() for path in song_paths]
    outcomes = collections.Counter(song_paths + list(state["errors"]))
    assert set(outcomes) == set(paths)
    assert max(outcomes.values()) == 1, [p for p, n in outcomes.items() if n > 1]
    assert summary["files_seen"] == len(paths)
    assert summary["files_seen"] == (summary["files_ingested"] + summary["files_duplicate"]
                                     + summary["files_failed"])
    assert summary["files_ingested"] == len(state["songs"]) == summary["songs_in_collection"]
    assert summary["files_duplicate"] == len(song_paths) - len(state["songs"])
    assert summary["files_failed"] == len(state["errors"])
    assert summary["failure_reasons"] == dict(collections.Counter(state["errors"].values()))
    assert sum(summary["songs_by_year_status"].values()) == summary["files_ingested"]


def assert_expected_outcomes(cases, good, state, db):
    paths_of_song = {path: paths for paths in state["songs"].values() for path in paths}
    for path in good:
        assert path in paths_of_song, path
    for case in cases:
        if case.expect is None:
            continue
        if case.expect in (SONG_OUTCOME, DUPLICATE_OUTCOME):
            assert case.path in paths_of_song, case
            if case.expect == DUPLICATE_OUTCOME:
                assert len(paths_of_song[case.path]) > 1, case
        elif case.expect == ERROR_OUTCOME:
            assert case.path in state["errors"], case
        else:
            assert "error:" + state["errors"].get(case.path, "<none>") == case.expect, case
    for case in cases:
        if case.mutation in ("year_minus_5", "year_3000"):
            doc = db.songs.find_one({"source.paths": case.path})
            assert doc["features"]["year"] is None and doc["features"]["decade"] is None
            assert doc["features"]["year_status"] == "out_of_range"
            assert doc["musicbrainz"]["songs"]["year"] in (-5, 3000)
