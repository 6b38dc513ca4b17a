"""Listing and reading song files: local folder, glob, list file, and S3 through a moto
server on 127.0.0.1."""
import os
from pathlib import Path

import boto3
import pytest

from msdlib.io import sources
from msdlib.config import ConfigError
from msdlib.io.sources import (SourceError, SourceReader, list_sources, read_bytes,
                               split_s3_uri)
from project_paths import PROJECT_ROOT


def write(path: Path, content: bytes = b"x") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


@pytest.fixture
def song_tree(tmp_path):
    """An MSD-style X/Y/Z tree with three .h5 files and two files to ignore."""
    root = tmp_path / "tracks"
    paths = [write(root / "B" / "A" / "C" / "TRBAC1.h5", b"b"),
             write(root / "A" / "B" / "C" / "TRABC1.h5", b"a1"),
             write(root / "A" / "B" / "C" / "TRABC0.h5", b"a0")]
    write(root / "A" / "B" / "C" / "notes.txt")
    write(root / "A" / "README")
    return root, sorted(paths)


def test_folder_lists_h5_files_recursively_sorted(song_tree):
    root, expected = song_tree
    assert list_sources(str(root)) == expected


def test_relative_folder_resolves_against_project_root(song_tree):
    root, expected = song_tree
    relative = os.path.relpath(root, PROJECT_ROOT)
    assert list_sources(relative) == expected


def test_max_files_caps_the_sorted_listing(song_tree):
    root, expected = song_tree
    assert list_sources(str(root), max_files=2) == expected[:2]
    assert list_sources(str(root), max_files=0) == expected


def test_glob_lists_matching_files(song_tree):
    root, expected = song_tree
    assert list_sources(str(root / "**" / "*.h5")) == expected
    assert list_sources(str(root / "A" / "*" / "*" / "TRABC*.h5")) == expected[:2]


def test_list_file_keeps_its_order_skips_comments_and_resolves_relative_paths(song_tree):
    root, expected = song_tree
    list_file = root / "lists" / "songs.txt"
    write(list_file, "\n".join([
        "# the songs to ingest",
        expected[2],
        "",
        "../A/B/C/TRABC0.h5",
        "s3://bucket/tracks/TRX.h5",
        expected[2],
    ]).encode())
    assert list_sources("@" + str(list_file)) == [
        expected[2], expected[0], "s3://bucket/tracks/TRX.h5"]


@pytest.mark.parametrize("source, message", [
    ("/no/such/folder", "does not exist"),
    ("@/no/such/list.txt", "cannot read list file"),
    ("/no/such/*.h5", "no .h5 files"),
    ("  ", "empty"),
])
def test_missing_sources_are_configuration_errors(source, message):
    with pytest.raises(SourceError, match=message) as caught:
        list_sources(source)
    assert isinstance(caught.value, ConfigError)


def test_folder_without_songs_is_an_error(tmp_path):
    write(tmp_path / "notes.txt")
    with pytest.raises(SourceError, match="no .h5 files"):
        list_sources(str(tmp_path))


def test_read_bytes_local(song_tree):
    _, paths = song_tree
    assert read_bytes(paths[0]) == b"a0"
    with pytest.raises(OSError):
        read_bytes(paths[0] + ".missing")


def test_split_s3_uri():
    assert split_s3_uri("s3://bucket/a/b.h5") == ("bucket", "a/b.h5")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(SourceError):
        split_s3_uri("/local/path")
    with pytest.raises(SourceError):
        split_s3_uri("s3:///key")


def test_s3_prefix_lists_every_h5_key_across_pages(s3_env, monkeypatch):
    monkeypatch.setattr(sources, "S3_PAGE_SIZE", 2)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="songs-list")
    keys = ["tracks/{}/B/C/TR{}BC.h5".format(letter, letter) for letter in "EDCBA"]
    for key in keys:
        s3.put_object(Bucket="songs-list", Key=key, Body=b"")
    s3.put_object(Bucket="songs-list", Key="tracks/README.txt", Body=b"")
    s3.put_object(Bucket="songs-list", Key="other/TROTHER.h5", Body=b"")

    listed = list_sources("s3://songs-list/tracks/")

    assert listed == ["s3://songs-list/" + key for key in sorted(keys)]
    assert list_sources("s3://songs-list/tracks", max_files=3) == listed[:3]


def test_s3_endpoint_can_be_passed_explicitly(moto_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="songs-explicit")
    s3.put_object(Bucket="songs-explicit", Key="TRONE.h5", Body=b"\x89HDF")

    assert list_sources("s3://songs-explicit", endpoint_url=moto_endpoint) == [
        "s3://songs-explicit/TRONE.h5"]
    assert read_bytes("s3://songs-explicit/TRONE.h5", endpoint_url=moto_endpoint) == b"\x89HDF"


def test_empty_s3_prefix_is_an_error(s3_env):
    boto3.client("s3").create_bucket(Bucket="songs-empty")
    with pytest.raises(SourceError, match="no .h5 files"):
        list_sources("s3://songs-empty/tracks/")


def test_reader_reads_s3_and_local_with_one_client(s3_env, song_tree):
    _, paths = song_tree
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="songs-read")
    s3.put_object(Bucket="songs-read", Key="a/TRA.h5", Body=b"payload")
    reader = SourceReader()

    assert reader.read("s3://songs-read/a/TRA.h5") == b"payload"
    assert reader.read(paths[1]) == b"a1"
    with pytest.raises(s3.exceptions.NoSuchKey):
        reader.read("s3://songs-read/a/missing.h5")
