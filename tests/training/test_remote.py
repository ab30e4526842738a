"""A dataset version published to object storage and trained from on another machine: a local S3
(moto's server on 127.0.0.1) stands in for the bucket, a second workspace for the other machine.
The crops go up before the manifest, the fetched copy gives the very batches the local version
gives, a second run reads no crop again, and a damaged crop or a missing URL is one clear error."""

import hashlib
import logging
import re

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from curation.dataset_export import ExportError, export_dataset
from curation.dataset_publish import publish_dataset
from manifests.datasets import write_version
from manifests.records import DatasetRow
from manifests.storage import StorageError, parse_options, redact, safe_relative
from manifests.workspace import Workspace
from replicas.drawn import draw_character, encode
from tests.training.conftest import tiny
from training.data import Batches, DataError, dataset_source

BUCKET = "headshot-test"
runner = CliRunner()


@pytest.fixture(scope="module")
def s3():
    """moto's S3 on a free port, with dummy credentials and no user AWS files in the way."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
            mp.delenv(k, raising=False)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-value")
        mp.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        import boto3

        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield {"endpoint_url": endpoint}
        server.stop()


def s3_client(s3):
    import boto3

    return boto3.client("s3", endpoint_url=s3["endpoint_url"])


@pytest.fixture(scope="module")
def laptop(tmp_path_factory):
    """A workspace with `faces` v1: 20 drawn crops, 4 of them in val."""
    ws = Workspace.open(tmp_path_factory.mktemp("laptop") / "ws")
    rows = []
    for i in range(20):
        data = encode(draw_character(200 + i, 64), "PNG")
        cid = hashlib.sha256(data).hexdigest()[:32]
        rel = f"crops/{cid[:2]}/{cid}.png"
        (ws.home / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws.home / rel).write_bytes(data)
        rows.append(DatasetRow(crop_id=cid, crop_path=rel, split="val" if i < 4 else "train", tags=("smile",) * (i % 2),
                               image_sha256=cid * 2, source="local", image_url=f"file:///art/{i}.png"))
    write_version(ws, "faces", rows, "test-build")
    return ws


def keys(s3, prefix):
    listed = s3_client(s3).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def requests(caplog):
    """The S3 requests moto's server logged (werkzeug's access log), as 'GET /bucket/key'."""
    return [m.group(1) for r in caplog.records if (m := re.search(r'"([A-Z]+ /[^ ?]*)', r.getMessage()))]


def first_batch(src):
    return Batches(src, tiny(batch_size=8), torch.device("cpu")).next()


def test_published_crops_go_up_before_the_manifest_and_it_names_them(laptop, s3, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        res = publish_dataset(laptop, "faces", None, f"s3://{BUCKET}/pub", storage_options=s3)
    assert res.path == f"s3://{BUCKET}/pub/faces-v1.parquet" and res.rows == 20 and res.splits == {"train": 16, "val": 4}
    stored = keys(s3, "pub/")
    crops = [k for k in stored if k.startswith("pub/faces-v1/crops/")]
    assert stored == sorted(crops + ["pub/faces-v1.parquet"]) and len(crops) == 20  # no temp key left
    puts = [r for r in requests(caplog) if r.startswith("PUT ")]
    manifest_puts = [i for i, r in enumerate(puts) if "faces-v1.parquet" in r]
    assert len(puts) == 22 and manifest_puts == [20, 21]  # 20 crops, then the temp manifest, then its move
    assert ".tmp-faces-v1.parquet" in puts[20] and puts[21] == f"PUT /{BUCKET}/pub/faces-v1.parquet"
    body = s3_client(s3).get_object(Bucket=BUCKET, Key="pub/faces-v1.parquet")["Body"].read()
    import io

    df = pd.read_parquet(io.BytesIO(body))
    assert len(df) == 20
    for rec in df.to_dict("records"):
        obj = s3_client(s3).get_object(Bucket=BUCKET, Key=f"pub/{rec['crop_path']}")["Body"].read()
        assert rec["crop_path"].startswith("faces-v1/crops/") and hashlib.sha256(obj).hexdigest() == rec["crop_sha256"]
        assert obj == (laptop.home / rec["crop_path"].removeprefix("faces-v1/")).read_bytes()
    with pytest.raises(ExportError, match=r"s3://headshot-test/pub/faces-v1.parquet exists; pass --overwrite"):
        publish_dataset(laptop, "faces", 1, f"s3://{BUCKET}/pub", storage_options=s3)
    assert publish_dataset(laptop, "faces", 1, f"s3://{BUCKET}/pub", overwrite=True, storage_options=s3).rows == 20


def test_another_machine_trains_on_the_same_batches_and_fetches_once(laptop, s3, tmp_path, caplog):
    url = f"s3://{BUCKET}/x/faces-v1.parquet"
    publish_dataset(laptop, "faces", 1, f"s3://{BUCKET}/x", storage_options=s3)
    other = Workspace.open(tmp_path / "other")  # nothing but the URL
    local = dataset_source(laptop, "faces@v1")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        remote = dataset_source(other, url, s3)
    crops = [r for r in requests(caplog) if "/x/faces-v1/crops/" in r]
    assert len(crops) == 20 and all(r.startswith("GET ") for r in crops)  # one GET a crop, no HEAD before it
    assert (remote.name, remote.version, remote.content_hash) == ("faces", 1, local.content_hash)
    assert (len(remote.files), len(remote.val_files)) == (16, 4) and remote.origin == url
    assert all(other.cache in p.parents for p in remote.files + remote.val_files)
    assert [p.read_bytes() for p in remote.files] == [p.read_bytes() for p in local.files]
    assert torch.equal(first_batch(remote), first_batch(local))

    mtimes = {p: p.stat().st_mtime_ns for p in remote.files}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        again = dataset_source(other, url, s3)
    # the manifest only (is it still the same?): s3fs asks its size, then reads it
    assert requests(caplog) == [f"HEAD /{BUCKET}/x/faces-v1.parquet", f"GET /{BUCKET}/x/faces-v1.parquet"]
    assert again.files == remote.files and {p: p.stat().st_mtime_ns for p in again.files} == mtimes
    # --resume names the version, not the URL: the fetched copy is found without the bucket
    assert dataset_source(other, "faces@v1").files == remote.files


def test_train_from_a_url_on_the_command_line(laptop, s3, tmp_path):
    from pipelines.cli import app

    publish_dataset(laptop, "faces", 1, f"s3://{BUCKET}/cli", storage_options=s3)
    home = tmp_path / "elsewhere"
    args = ["--home", str(home), "train", "--dataset", f"s3://{BUCKET}/cli/faces-v1.parquet",
            "--storage-option", f"endpoint_url={s3['endpoint_url']}", "--steps", "2", "--batch-size", "8",
            "--device", "cpu", "--no-progress", "--name", "far", "--json"]
    for kv in ("ngf=8", "ndf=8", "sample_every=1", "eval_every=0", "best_metric=none", "precision=fp32",
               "channels_last=off", "threads=2"):
        args += ["--set", kv]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    import json

    config = json.loads((home / "runs" / "far" / "config.json").read_text())
    assert config["data"]["origin"] == f"s3://{BUCKET}/cli/faces-v1.parquet" and config["data"]["train_images"] == 16
    missing = runner.invoke(app, ["--home", str(home), "train", "--dataset", f"s3://{BUCKET}/cli/faces-v9.parquet",
                                  "--storage-option", f"endpoint_url={s3['endpoint_url']}"])
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1
    assert f"s3://{BUCKET}/cli/faces-v9.parquet: no such file" in missing.output
    no_bucket = runner.invoke(app, ["--home", str(home), "train", "--dataset", "s3://no-such-bucket/faces-v1.parquet",
                                    "--storage-option", f"endpoint_url={s3['endpoint_url']}"])
    assert no_bucket.exit_code == 2 and "no such file" in no_bucket.output


def test_a_damaged_crop_in_the_bucket_is_named_and_nothing_trains(laptop, s3, tmp_path):
    publish_dataset(laptop, "faces", 1, f"s3://{BUCKET}/bad", storage_options=s3)
    victim = [k for k in keys(s3, "bad/faces-v1/crops/")][7]
    good = s3_client(s3).get_object(Bucket=BUCKET, Key=victim)["Body"].read()
    s3_client(s3).put_object(Bucket=BUCKET, Key=victim, Body=good[:-10] + b"\0" * 10)
    other = Workspace.open(tmp_path / "other")
    crop_id = victim.rsplit("/", 1)[1].removesuffix(".png")
    with pytest.raises(DataError, match=rf"crop {crop_id}: s3://{BUCKET}/{victim} is damaged .* publish it again"):
        dataset_source(other, f"s3://{BUCKET}/bad/faces-v1.parquet", s3)
    assert not list((other.cache / "datasets").glob("*/.complete"))
    s3_client(s3).delete_object(Bucket=BUCKET, Key=victim)
    with pytest.raises(DataError, match=rf"crop {crop_id}: s3://{BUCKET}/{victim} is missing from the published"):
        dataset_source(other, f"s3://{BUCKET}/bad/faces-v1.parquet", s3)


def test_credentials_from_the_environment_and_never_printed(laptop, s3, tmp_path, monkeypatch):
    from pipelines.cli import app

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3["endpoint_url"])  # botocore's own variable: no option needed
    done = runner.invoke(app, ["--home", str(laptop.home), "dataset", "export", "faces", "--out", f"s3://{BUCKET}/env",
                               "--format", "parquet", "--storage-option", "key=AKIAEXAMPLEKEY",
                               "--storage-option", "secret=not-to-be-printed"])
    assert done.exit_code == 0, done.output
    assert f"as parquet to s3://{BUCKET}/env/faces-v1.parquet" in done.output
    assert f"headshot train --dataset s3://{BUCKET}/env/faces-v1.parquet" in done.output
    refused = runner.invoke(app, ["--home", str(laptop.home), "dataset", "export", "faces", "--out",
                                  "s3://no-such-bucket/x", "--format", "parquet", "--storage-option", "key=AKIAEXAMPLEKEY",
                                  "--storage-option", "secret=not-to-be-printed"])
    assert refused.exit_code == 2 and "s3://no-such-bucket/x/faces-v1.parquet" in refused.output
    for out in (done.output, refused.output):
        assert "not-to-be-printed" not in out and "AKIAEXAMPLEKEY" not in out and "testing-secret-value" not in out
    src = dataset_source(Workspace.open(tmp_path / "other"), f"s3://{BUCKET}/env/faces-v1.parquet")
    assert len(src.files) == 16


def test_a_file_url_and_a_local_parquet_export_train_too(laptop, tmp_path):
    res = publish_dataset(laptop, "faces", 1, (tmp_path / "published").as_uri())
    assert res.path == (tmp_path / "published" / "faces-v1.parquet").as_uri()
    assert sorted(p.name for p in (tmp_path / "published").iterdir()) == ["faces-v1", "faces-v1.parquet"]  # no temp
    local = dataset_source(laptop, "faces@v1")
    other = Workspace.open(tmp_path / "other")
    for ref in (res.path, str(tmp_path / "published" / "faces-v1.parquet"),
                str(export_dataset(laptop, "faces", 1, tmp_path / "one.parquet", fmt="parquet").path)):  # bytes inside
        src = dataset_source(other, ref)
        assert src.content_hash == local.content_hash and torch.equal(first_batch(src), first_batch(local)), ref
    with pytest.raises(ExportError, match="is a URL: --format folder writes a local path; --format parquet publishes"):
        export_dataset(laptop, "faces", 1, f"s3://{BUCKET}/folder")
    with pytest.raises(DataError, match="no such file"):
        dataset_source(other, str(tmp_path / "nope.parquet"))


def test_a_manifest_whose_paths_leave_its_folder_is_refused(laptop, tmp_path):
    res = publish_dataset(laptop, "faces", 1, (tmp_path / "pub").as_uri())
    import pyarrow.parquet as pq

    path = tmp_path / "pub" / "faces-v1.parquet"
    table = pq.read_table(path)
    paths = table.column("crop_path").to_pylist()
    paths[0] = "../../ws/review.sqlite"
    pq.write_table(table.set_column(table.column_names.index("crop_path"), "crop_path", [paths]), path)
    with pytest.raises(DataError, match=r"leaves the manifest's folder; nothing was fetched"):
        dataset_source(Workspace.open(tmp_path / "other"), res.path)


def test_storage_options_and_redaction():
    assert parse_options(["endpoint_url=http://127.0.0.1:9000", "anon=false", "client_kwargs.region_name=eu-west-1",
                          "max_concurrency=4"]) == {"endpoint_url": "http://127.0.0.1:9000", "anon": False,
                                                    "client_kwargs": {"region_name": "eu-west-1"}, "max_concurrency": 4}
    with pytest.raises(StorageError, match="write KEY=VALUE"):
        parse_options(["endpoint_url"])
    assert redact("s3://AKID:hunter22@b/x failed with hunter22", {"secret": "hunter22"}) == "s3://***@b/x failed with ***"
    assert redact("token abcd1234 in client", {"client_kwargs": {"aws_session_token": "abcd1234"}}) == "token *** in client"
    assert [safe_relative(p) for p in ("a/crops/x.png", "../x", "/etc/x", "a//b", "s3://b/x", "C:/x", "a/./b")] == \
        [True, False, False, False, False, False, False]

