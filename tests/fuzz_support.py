"""Seeded damage to MSD song files, for the ingest fuzz test.

``build_corpus(good_files, out_dir, seed, count)`` copies randomly chosen good files
and damages each copy one way (``MUTATIONS``): datasets or groups deleted, dtypes and
shapes changed, required fields dropped, songs tables emptied or made 2-D, headers
claiming impossible sizes, dangling links, corrupt compressed chunks, truncation at a
random offset, random bytes flipped, impossible values (years -5 and 3000, NaN timbre,
an integer beyond 64 bits, a blank track id); it adds symlinks (to good files, to damaged ones,
broken, to a folder), folders named ``*.h5`` and plain duplicate copies. The same seed
and inputs give byte-identical files. Each ``Case`` says what ingest must make of its
path when the outcome is certain (``expect``), or ``None`` when only the accounting is
(flipped bytes may land in a string and leave a valid song).
"""
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import h5py
import numpy as np

SONG_OUTCOME = "song"
DUPLICATE_OUTCOME = "duplicate"
ERROR_OUTCOME = "error"
GROUPS = ("metadata", "analysis", "musicbrainz")


@dataclass(frozen=True)
class Case:
    path: str
    mutation: str
    # "song", "duplicate", "error" or "error:<reason>"; None: any outcome (accounted for).
    expect: Optional[str]


def _datasets(h5: h5py.File) -> List[str]:
    names = []  # type: List[str]
    h5.visititems(lambda name, node: names.append(name)
                  if isinstance(node, h5py.Dataset) else None)
    return sorted(names)


def _replace(h5: h5py.File, name: str, data: np.ndarray) -> None:
    del h5[name]
    h5.create_dataset(name, data=data)


def delete_dataset(path: Path, rng: random.Random) -> Optional[str]:
    with h5py.File(path, "r+") as h5:
        name = rng.choice(_datasets(h5))
        del h5[name]
    required = {"analysis/segments_timbre": "error:missing_dataset",
                "analysis/songs": "error:missing_songs_table",
                "metadata/songs": "error:missing_songs_table",
                "musicbrainz/songs": "error:missing_songs_table"}
    return required.get(name, SONG_OUTCOME)


def delete_timbre(path: Path, rng: random.Random) -> Optional[str]:
    """The issue's own example: analysis present, segments_timbre missing."""
    with h5py.File(path, "r+") as h5:
        del h5["analysis/segments_timbre"]
    return "error:missing_dataset"


def delete_group(path: Path, rng: random.Random) -> Optional[str]:
    with h5py.File(path, "r+") as h5:
        del h5[rng.choice(GROUPS)]
    return "error:missing_group"


def change_dtype(path: Path, rng: random.Random) -> Optional[str]:
    """segments_timbre as strings or integers, or year as a float field."""
    with h5py.File(path, "r+") as h5:
        choice = rng.randrange(3)
        if choice == 2:
            table = h5["musicbrainz/songs"][()]
            fields = [(name, "<f8" if name == "year" else table.dtype.fields[name][0])
                      for name in table.dtype.names]
            _replace(h5, "musicbrainz/songs", table.astype(np.dtype(fields)))
            return "error:bad_dtype"
        timbre = h5["analysis/segments_timbre"][()]
        _replace(h5, "analysis/segments_timbre",
                 timbre.astype("S8") if choice == 0 else timbre.astype(np.int32))
    return "error:bad_dtype"


def change_shape(path: Path, rng: random.Random) -> Optional[str]:
    with h5py.File(path, "r+") as h5:
        timbre = h5["analysis/segments_timbre"][()]
        reshaped = rng.choice([timbre.T, timbre.ravel(), timbre[:, :5],
                               timbre.reshape(timbre.shape + (1,))])
        if reshaped.shape == timbre.shape:  # a 12 x 12 timbre transposed stays valid
            reshaped = timbre.ravel()
        _replace(h5, "analysis/segments_timbre", reshaped)
    return "error:bad_shape"


def truncate(path: Path, rng: random.Random) -> Optional[str]:
    data = path.read_bytes()
    path.write_bytes(data[:rng.randrange(0, len(data) - 1)])
    return ERROR_OUTCOME


def flip_bytes(path: Path, rng: random.Random) -> Optional[str]:
    data = bytearray(path.read_bytes())
    for _ in range(rng.randint(1, 64)):
        data[rng.randrange(len(data))] ^= rng.randint(1, 255)
    path.write_bytes(bytes(data))
    return None


def garbage(path: Path, rng: random.Random) -> Optional[str]:
    path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096))))
    return "error:not_hdf5"


def set_year(year: int) -> Callable[[Path, random.Random], Optional[str]]:
    """An impossible year on a song of its own (a fresh track id): stored, never a label."""
    def mutate(path: Path, rng: random.Random) -> Optional[str]:
        with h5py.File(path, "r+") as h5:
            for group, field, value in (("musicbrainz", "year", year),
                                        ("analysis", "track_id", fuzz_track_id(rng))):
                table = h5[group + "/songs"][()]
                table[field] = value
                h5[group + "/songs"][...] = table
        return SONG_OUTCOME
    return mutate


def fuzz_track_id(rng: random.Random) -> bytes:
    return "TRFZ{:014d}".format(rng.randrange(10 ** 14)).encode("ascii")


def nan_timbre(path: Path, rng: random.Random) -> Optional[str]:
    with h5py.File(path, "r+") as h5:
        timbre = h5["analysis/segments_timbre"][()]
        timbre[rng.randrange(timbre.shape[0]), rng.randrange(timbre.shape[1])] = np.nan
        h5["analysis/segments_timbre"][...] = timbre
    return "error:nonfinite_timbre"


def huge_integer(path: Path, rng: random.Random) -> Optional[str]:
    """An unsigned 64-bit value BSON cannot store, in an extra dataset."""
    with h5py.File(path, "r+") as h5:
        h5["analysis"].create_dataset("huge", data=np.array([2 ** 64 - 1], dtype=np.uint64))
    return "error:unencodable"


def drop_required_field(path: Path, rng: random.Random) -> Optional[str]:
    group, name = rng.choice([("analysis", "track_id"), ("metadata", "artist_id"),
                              ("musicbrainz", "year")])
    with h5py.File(path, "r+") as h5:
        table = h5[group + "/songs"][()]
        kept = [field for field in table.dtype.names if field != name]
        _replace(h5, group + "/songs", table[kept].astype(
            np.dtype([(field, table.dtype.fields[field][0]) for field in kept])))
    return "error:missing_field"


def empty_songs_table(path: Path, rng: random.Random) -> Optional[str]:
    with h5py.File(path, "r+") as h5:
        name = rng.choice(GROUPS) + "/songs"
        _replace(h5, name, h5[name][()][:0])
    return "error:empty_songs_table"


def songs_table_2d(path: Path, rng: random.Random) -> Optional[str]:
    with h5py.File(path, "r+") as h5:
        name = rng.choice(GROUPS) + "/songs"
        _replace(h5, name, h5[name][()].reshape(1, -1))
    return "error:bad_shape"


def impossible_size(path: Path, rng: random.Random) -> Optional[str]:
    """A header claiming 800 MB (late allocation: the file stays small), in a nested
    group or at the root, which the document does not otherwise check."""
    with h5py.File(path, "r+") as h5:
        parent = h5 if rng.randrange(2) else h5["analysis"].create_group("nested")
        parent.create_dataset("claims_800mb", shape=(10 ** 8,), dtype="<f8")
    return "error:bad_shape"


def dangling_link(path: Path, rng: random.Random) -> Optional[str]:
    with h5py.File(path, "r+") as h5:
        h5[rng.choice(GROUPS)]["dangling"] = h5py.SoftLink("/nowhere")
    return "error:unreadable"


def corrupt_chunk(path: Path, rng: random.Random) -> Optional[str]:
    """The compressed bytes of one chunk of a required array overwritten: the header
    is sound, the data cannot be inflated."""
    with h5py.File(path, "r") as h5:
        chunk = h5["analysis/segments_timbre"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    for offset in range(chunk.byte_offset, chunk.byte_offset + chunk.size):
        data[offset] = rng.getrandbits(8)
    path.write_bytes(bytes(data))
    return "error:unreadable"


def blank_track_id(path: Path, rng: random.Random) -> Optional[str]:
    with h5py.File(path, "r+") as h5:
        table = h5["analysis/songs"][()]
        table["track_id"] = b""
        h5["analysis/songs"][...] = table
    return "error:missing_track_id"


MUTATIONS = {
    "delete_dataset": delete_dataset,
    "delete_timbre": delete_timbre,
    "delete_group": delete_group,
    "change_dtype": change_dtype,
    "change_shape": change_shape,
    "truncate": truncate,
    "flip_bytes": flip_bytes,
    "garbage": garbage,
    "year_minus_5": set_year(-5),
    "year_3000": set_year(3000),
    "nan_timbre": nan_timbre,
    "huge_integer": huge_integer,
    "drop_required_field": drop_required_field,
    "empty_songs_table": empty_songs_table,
    "songs_table_2d": songs_table_2d,
    "impossible_size": impossible_size,
    "dangling_link": dangling_link,
    "corrupt_chunk": corrupt_chunk,
    "blank_track_id": blank_track_id,
}  # type: Dict[str, Callable[[Path, random.Random], Optional[str]]]


def build_corpus(good_files: List[Path], out_dir: Path, seed: int, count: int) -> List[Case]:
    """``count`` damaged copies plus the links, folders and duplicates, under ``out_dir``
    (which must not exist); the good files are not part of it."""
    rng = random.Random(seed)
    damaged_dir = out_dir / "damaged"
    damaged_dir.mkdir(parents=True)
    cases = []  # type: List[Case]
    names = sorted(MUTATIONS)
    for index in range(count):
        mutation = names[index % len(names)] if index < len(names) else rng.choice(names)
        target = damaged_dir / "FUZZ{:04d}_{}.h5".format(index, mutation)
        shutil.copyfile(rng.choice(good_files), target)
        cases.append(Case(str(target), mutation, MUTATIONS[mutation](target, rng)))
    cases += _links_and_folders(good_files, out_dir, cases, rng)
    return cases


def _links_and_folders(good_files: List[Path], out_dir: Path, damaged: List[Case],
                       rng: random.Random) -> List[Case]:
    extra = out_dir / "extra"
    (extra / "folder.h5" / "inner").mkdir(parents=True)
    (extra / "subfolder").mkdir()
    cases = [Case(str(extra / "folder.h5"), "folder_named_h5", "error:not_a_file")]
    link_to_good = extra / "link_to_good.h5"
    os.symlink(rng.choice(good_files), link_to_good)
    cases.append(Case(str(link_to_good), "symlink_to_good", DUPLICATE_OUTCOME))
    copy = extra / "copy_of_good.h5"
    shutil.copyfile(rng.choice(good_files), copy)
    cases.append(Case(str(copy), "copy_of_good", DUPLICATE_OUTCOME))
    broken = extra / "broken_link.h5"
    os.symlink(str(extra / "nowhere.h5"), broken)
    cases.append(Case(str(broken), "broken_symlink", "error:unreadable"))
    bad = rng.choice([case for case in damaged if case.expect == "error:missing_dataset"])
    link_to_bad = extra / "link_to_damaged.h5"
    os.symlink(bad.path, link_to_bad)
    cases.append(Case(str(link_to_bad), "symlink_to_damaged", bad.expect))
    # A folder link named *.h5, and a loop back to the corpus root: neither may recurse.
    os.symlink(str(extra / "subfolder"), extra / "folder_link.h5")
    cases.append(Case(str(extra / "folder_link.h5"), "symlink_to_folder", "error:not_a_file"))
    os.symlink(str(out_dir), extra / "subfolder" / "loop")
    (extra / "empty.h5").write_bytes(b"")
    cases.append(Case(str(extra / "empty.h5"), "empty_file", "error:empty_file"))
    return cases
