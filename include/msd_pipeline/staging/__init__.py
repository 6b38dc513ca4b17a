"""Staging the MSD songs for ingest, shared by every target; each target's entry point
lives in its own folder (``targets/<name>/staging.py``).

* ``rules``: the modes and the ``auto`` rule, slices, song keys and labels, the report
  that becomes a location's manifest and the task's StagedData;
* ``reader``: the resumable HTTP reader, the download to a file, the archive's songs;
* ``sinks``: a local folder or an S3 prefix, and the ways songs get into one;
* ``generator``: MSD-format songs for the ``generated`` mode (and its CLI);
* ``progress``: bounded-rate progress lines of long downloads, extractions and uploads.
"""
