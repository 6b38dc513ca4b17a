"""read_ahead over a moto S3 server: S3 and local files through one reader's pooled
client, a missing key failing only its own file."""
import boto3

from msdlib.io.sources import SourceReader, read_ahead


def test_local_and_s3_files_through_one_reader(s3_env, tmp_path):
    boto3.client("s3").create_bucket(Bucket="read-ahead")
    uris = []
    for index in range(6):
        key = "songs/TR{}.h5".format(index)
        boto3.client("s3").put_object(Bucket="read-ahead", Key=key, Body=b"s3-%d" % index)
        uris.append("s3://read-ahead/" + key)
    local = tmp_path / "TRLOCAL.h5"
    local.write_bytes(b"local")
    paths = uris[:3] + [str(local), "s3://read-ahead/songs/missing.h5"] + uris[3:]

    results = {}
    for path, song_file in read_ahead(SourceReader(max_connections=3), paths, 3):
        try:
            results[path] = song_file.read(path)
        except Exception as exc:  # botocore's NoSuchKey, as SourceReader raises it
            results[path] = type(exc).__name__

    assert [results[uri] for uri in uris] == [b"s3-%d" % index for index in range(6)]
    assert results[str(local)] == b"local"
    assert results["s3://read-ahead/songs/missing.h5"] == "NoSuchKey"
