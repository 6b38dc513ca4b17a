"""Year imputation: the chosen models date the songs whose year is unknown.

The decade model and the year model run one after the other on the unknown-year songs
(``features.year`` null, features valid); each Spark partition writes
``predicted: {year, decade, model_version, predicted_at}`` back to its songs with
unordered bulk ``UpdateOne`` batches. Only the ``predicted`` field is set, as a whole,
so the original fields stay untouched and a newer model replaces the previous
prediction instead of adding one. A song already predicted by ``model_version`` is
left as it is (the update's filter skips it): re-running a version, or keeping the
champion after a rejected challenger, writes only the songs it has not dated yet. A predicted year is clipped to the labelled songs' year range
(a linear model can extrapolate past it, e.g. to next year). The count of written
songs comes back as a small sum.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import datetime
from typing import Any, Callable, Dict, Iterable, Iterator, Tuple

from msdlib.core.models import PREDICTED_DECADE_COL, YEAR_PREDICTION_COL
from msdlib.io.mongo import bulk_write_batches, connect


def prediction_update(track_id: str, year: float, decade: str, model_version: str,
                      predicted_at: datetime.datetime, year_bounds: Tuple[int, int]) -> Any:
    """The UpdateOne that sets (or replaces) one song's ``predicted`` field."""
    from pymongo import UpdateOne

    low, high = year_bounds
    return UpdateOne({"_id": track_id, "predicted.model_version": {"$ne": model_version}},
                     {"$set": {"predicted": {
        "year": min(max(int(round(year)), low), high),
        "decade": int(decade),
        "model_version": model_version,
        "predicted_at": predicted_at,
    }}})


def write_partition(mongo_uri: str, database: str, collection: str, model_version: str,
                    predicted_at: datetime.datetime, year_bounds: Tuple[int, int],
                    batch_size: int) -> Callable[[Iterable[Any]], Iterator[int]]:
    """The mapPartitions function: one client per partition, yields its written count."""

    def write(rows: Iterable[Any]) -> Iterator[int]:
        operations = (prediction_update(row["track_id"], row[YEAR_PREDICTION_COL],
                                        row[PREDICTED_DECADE_COL], model_version,
                                        predicted_at, year_bounds) for row in rows)
        client = connect(mongo_uri)
        try:
            counts = bulk_write_batches(client[database][collection], operations, batch_size)
        finally:
            client.close()
        yield counts.matched

    return write


def impute(unknown: Any, decade_model: Any, year_model: Any, mongo_uri: str, database: str,
           collection: str, model_version: str, year_bounds: Tuple[int, int],
           batch_size: int) -> Dict[str, Any]:
    """Predict and write back; returns {imputed, model_version, predicted_at}."""
    predicted_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    predictions = year_model.transform(decade_model.transform(unknown)) \
        .select("track_id", YEAR_PREDICTION_COL, PREDICTED_DECADE_COL)
    imputed = predictions.rdd.mapPartitions(write_partition(
        mongo_uri, database, collection, model_version, predicted_at, year_bounds,
        batch_size)).sum()
    return {"imputed": int(imputed), "model_version": model_version,
            "predicted_at": predicted_at.isoformat()}
