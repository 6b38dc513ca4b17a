"""API keys: kept as SHA-256 digests, checked in constant time, never logged.

A caller sends its key in the ``X-API-Key`` header. A missing key is a 401, a wrong one
a 403; both say what to do and neither repeats what was sent.
"""
import hashlib
import hmac
from typing import Iterable, Optional

from fastapi import HTTPException

KEY_HEADER = "X-API-Key"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def matches(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys: its digest is compared with every
        stored digest (no early exit), so the time does not depend on which matched."""
        digest = _digest(presented)
        found = False
        for stored in self._digests:
            found |= hmac.compare_digest(digest, stored)
        return found

    def check(self, presented: Optional[str], what: str) -> None:
        """Raise the 401 / 403 for ``what`` (e.g. "POST /predict") unless ``presented``
        is a configured key."""
        if not self._digests:
            raise HTTPException(401, "{} needs an API key and none is configured on this "
                                     "service (MSD_SERVING_API_KEYS_FILE or "
                                     "MSD_SERVING_API_KEYS)".format(what))
        if not presented:
            raise HTTPException(401, "{} needs an API key: send it in the {} header"
                                .format(what, KEY_HEADER))
        if not self.matches(presented):
            raise HTTPException(403, "the API key in the {} header is not valid"
                                .format(KEY_HEADER))
