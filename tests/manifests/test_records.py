import dataclasses
from datetime import datetime, timezone

import pytest

from manifests.records import (
    ALL_RECORDS, Attribute, DatasetRow, DupGroup, FaceCrop, FilterResult, HashRecord, Review, ScrapedImage,
    StoredImage, from_table, to_table,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)

SAMPLES = [
    ScrapedImage(source="getchu", source_id="1092994/chara1", image_url="https://x/chara1.jpg", status="ok",
                 title="タイトル", tags=("a", "b"), published_at=NOW, fetched_at=NOW, crawl_run_id="r1",
                 image_sha256="ab" * 32),
    StoredImage(image_sha256="cd" * 32, status="ok", blob_path="images/cd/x.png", bytes=10, format="PNG",
                width=5, height=6, mode="RGBA", frames=1, transparent=True, ingested_at=NOW),
    FaceCrop(crop_id="c1", image_sha256="cd" * 32, box_x=1, box_y=2, box_w=30, box_h=30, margin=0.25,
             detector="lbp", detector_version="1", detector_params='{"scale": 1.1}', score=0.5,
             crop_path="crops/c1.png", size=64),
    FilterResult(subject_id="c1", filter="monochrome", score=0.02, threshold=0.05, passed=False, version="1",
                 reason="colourfulness 0.02 < 0.05"),
    HashRecord(crop_id="c1", algorithm="dhash", hash_size=16, value="ff" * 32, library_version="4.3.2"),
    DupGroup(crop_id="c1", group_id="g1", keeper=True, distance=0, policy="largest"),
    Review(crop_id="c1", decision="accept", reviewer="ann", at=NOW, tags=("disney",)),
    DatasetRow(crop_id="c1", crop_path="crops/c1.png", split="train", tags=("x",), image_url="https://x"),
    Attribute(crop_id="c1", name="hair", value="blue", origin="estimated", confidence=0.75, version="colours-v1"),
]


@pytest.mark.parametrize("cls", ALL_RECORDS, ids=lambda c: c.__name__)
def test_schema_names_every_field_in_order(cls):
    assert [f.name for f in dataclasses.fields(cls)] == cls.SCHEMA.names
    assert set(cls.KEY) <= set(cls.SCHEMA.names)


def test_every_record_has_a_sample():
    assert {type(s) for s in SAMPLES} == set(ALL_RECORDS)


@pytest.mark.parametrize("rec", SAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip_through_arrow(rec):
    cls = type(rec)
    table = to_table(cls, [rec])
    assert table.schema == cls.SCHEMA
    assert from_table(cls, table) == [rec]


def test_status_is_checked():
    with pytest.raises(ValueError, match="status"):
        StoredImage(image_sha256="00" * 32, status="fine")
    with pytest.raises(ValueError, match="decision"):
        Review(crop_id="c", decision="maybe", reviewer="a", at=NOW)
    with pytest.raises(ValueError, match="origin"):
        Attribute(crop_id="c", name="hair", value="blue", origin="guessed")


def test_to_table_refuses_mixed_records():
    with pytest.raises(TypeError):
        to_table(StoredImage, [SAMPLES[0]])
