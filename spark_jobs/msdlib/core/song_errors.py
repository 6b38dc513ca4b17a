"""Why a file cannot become a song: ``SongFileError`` with a short machine-friendly
``reason`` (one of ``REASONS``), raised by the HDF5 reader and the feature extractor and
recorded per file in ``ingest_errors``.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""

REASONS = {
    "empty_file": "the file has zero bytes",
    "not_hdf5": "the content is not an HDF5 file",
    "truncated": "the HDF5 file is shorter than its header says",
    "unreadable": "the file or one of its datasets cannot be read",
    "missing_group": "a required MSD group is missing",
    "missing_songs_table": "a group has no compound 'songs' table",
    "empty_songs_table": "a 'songs' table has no row",
    "missing_field": "a 'songs' table lacks a field the pipeline needs",
    "missing_dataset": "a dataset the pipeline needs (segments_timbre) is missing",
    "bad_dtype": "a field or dataset has the wrong type",
    "bad_shape": "a dataset has the wrong shape or an impossible size",
    "missing_track_id": "analysis/songs has no track_id",
    "empty_timbre": "segments_timbre has no segment",
    "too_few_segments": "segments_timbre has fewer than 2 segments",
    "bad_timbre_shape": "segments_timbre is not an n x 12 array",
    "nonfinite_timbre": "segments_timbre holds NaN or infinite values",
    "unencodable": "a value BSON cannot store (an integer beyond 64 bits)",
}


class SongFileError(ValueError):
    """A file that cannot become a song; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__("{}: {}".format(reason, message))
        self.reason = reason
