"""The ingest job's MongoDB writes: one batch of song documents and error records, and
the ``source.paths`` of songs found under several paths.

Songs are inserted when new and replaced when stored, in unordered bulk writes: the end
state of an upsert of every document, at insert speed. A document the server rejects
(e.g. over the 16 MB BSON limit) becomes an error record instead of failing the batch;
anything else the server or the network raises fails the write (the caller retries it:
every write here is idempotent).

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
from typing import Any, Dict, Iterable, List, Tuple

from pymongo import DeleteMany, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError

from msdlib.core.ingest_accounting import REASON_WRITE_REJECTED, error_record, utc_now

DUPLICATE_KEY = 11000


def write_batch(songs: Any, ingest_errors: Any, documents: List[Dict[str, Any]],
                errors: List[Dict[str, Any]], run_id: str) -> List[Dict[str, Any]]:
    """Write ``documents`` and the error records; clear old records of written files.

    Returns one more error record per document the server rejected; those are stored
    with the others.
    """
    rejected = write_songs(songs, documents, run_id)
    rejected_paths = {record["_id"] for record in rejected}
    written_paths = [doc["source"]["path"] for doc in documents
                     if doc["source"]["path"] not in rejected_paths]
    operations = [ReplaceOne({"_id": record["_id"]}, record, upsert=True)
                  for record in errors + rejected]
    if written_paths:
        operations.append(DeleteMany({"_id": {"$in": written_paths}}))
    if operations:
        ingest_errors.bulk_write(operations, ordered=False)
    return rejected


def write_songs(songs: Any, documents: List[Dict[str, Any]],
                run_id: str) -> List[Dict[str, Any]]:
    """Insert the new songs and replace the existing ones, unordered; returns the error
    records of documents the server rejected.

    Inserts are cheaper than upserts: on SecantusDB, replacing a large document costs
    the server 2-3x the work of inserting it (benchmarks/README.md). A song inserted
    meanwhile by another partition (the same track under two paths) is replaced instead.
    """
    if not documents:
        return []
    ids = [doc["_id"] for doc in documents]
    existing = {doc["_id"] for doc in songs.find({"_id": {"$in": ids}}, {"_id": 1})}
    failures = _bulk_failures(songs, [
        ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) if doc["_id"] in existing
        else InsertOne(doc) for doc in documents])
    duplicates = [index for index, item in failures.items() if item.get("code") == DUPLICATE_KEY]
    if duplicates:
        retried = _bulk_failures(songs, [
            ReplaceOne({"_id": documents[index]["_id"]}, documents[index], upsert=True)
            for index in duplicates])
        for position, index in enumerate(duplicates):
            if position in retried:
                failures[index] = retried[position]
            else:
                del failures[index]
    recorded_at = utc_now()
    return [error_record(documents[index]["source"]["path"], REASON_WRITE_REJECTED,
                         item.get("errmsg", ""), run_id, recorded_at)
            for index, item in sorted(failures.items())]


def _bulk_failures(collection: Any, operations: List[Any]) -> Dict[int, Dict[str, Any]]:
    """Run an unordered bulk write; its per-operation write errors by operation index.
    Anything else (write concern, network, server down) raises."""
    try:
        collection.bulk_write(operations, ordered=False)
        return {}
    except BulkWriteError as exc:
        details = exc.details
        if details.get("writeConcernErrors") or not details.get("writeErrors"):
            raise
        return {item["index"]: item for item in details["writeErrors"]}


def set_source_paths(songs: Any, groups: Iterable[Tuple[str, List[str]]]) -> None:
    """Set ``source.paths`` of each ``(track_id, paths)`` group (sorted, not appended)."""
    songs.bulk_write([UpdateOne({"_id": track_id}, {"$set": {"source.paths": sorted(paths)}})
                      for track_id, paths in groups], ordered=False)
