"""Fixtures the unit tests of staging share: a song archive and HTTP servers of it on
127.0.0.1 (``staging_support``)."""
import pytest

from staging_support import RangeServers, archive_with_checksum


@pytest.fixture
def archive(tmp_path):
    """(path, bytes, "sha256:<hex>") of an archive of a few generated songs."""
    return archive_with_checksum(tmp_path / "source")


@pytest.fixture
def serve(archive):
    """``serve(**options)`` starts a Range-capable HTTP server of the archive on
    127.0.0.1; every server started is closed after the test."""
    servers = RangeServers(archive[1])
    yield servers.start
    servers.close()
