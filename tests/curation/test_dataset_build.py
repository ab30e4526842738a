"""`dataset build` as a stage, on a real processed workspace whose pictures were fetched over
HTTP: who decides (person, bulk-confirmed model, rule, opt-out), lineage back to the URL,
versions only on change, and splits that never separate a picture or a duplicate group.

The faces are drawn in code and found by animeface (its model ships in its wheel); the
workspace is built once per module and copied for each test, which then decides freely.
"""

import json
import shutil
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from PIL import Image, ImageOps

from curation.dataset_build import BuildConfig, build_dataset, decide, rows_for, split_keys
from curation.fetch import FetchConfig
from curation.ingest import IngestConfig, ingest
from curation.process import ProcessConfig, process
from curation.review.items import Item, load_items
from curation.review.store import Change, ReviewStore, State
from manifests import tables
from manifests.atomic import read_metadata
from manifests.blobs import sha256_hex
from manifests.datasets import DatasetError, read_version, versions
from manifests.records import ScrapedImage
from manifests.workspace import Workspace, WorkspaceBusy
from replicas.drawn import draw_character, encode
from replicas.sites.server import Replica, Response

CFG = ProcessConfig(detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)
PAGE = "https://artist.example/deviation/two-faces"


def artwork() -> dict[str, tuple[str, bytes]]:
    pair = Image.new("RGB", (1024, 512))
    pair.paste(draw_character(3, 512), (0, 0))
    pair.paste(draw_character(5, 512), (512, 0))
    png = lambda im: ("image/png", encode(im, "PNG"))
    return {
        **{f"/art/{i}.png": png(draw_character(i, 512)) for i in (1, 3, 5, 6)},  # seeds animeface finds
        "/art/pair.png": png(pair),  # two faces in one picture
        "/art/1-small.jpg": ("image/jpeg", encode(draw_character(1, 512).resize((384, 384), Image.LANCZOS),
                                                  "JPEG", quality=90)),  # a near-duplicate of 1.png
        "/art/grey.png": png(ImageOps.grayscale(draw_character(8, 512)).convert("RGB")),  # monochrome
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    ws = Workspace.open(root / "ws")
    art = artwork()
    with Replica() as site:
        site.route("/robots.txt", lambda r: Response(200, {"Content-Type": "text/plain"}, b"User-agent: *\nAllow: /\n"))
        for path, (ctype, body) in art.items():
            site.route(path, lambda r, c=ctype, b=body: Response(200, {"Content-Type": c}, b))
        urls = {path: site.base + path for path in art}
        listing = root / "urls.txt"
        listing.write_text("\n".join(urls.values()) + "\n")
        ingest([str(listing)], ws, IngestConfig(fetch=replace(FetchConfig(), per_host_delay=0.0), workers=2),
               progress=False)
    sha = {path: sha256_hex(body) for path, (_, body) in art.items()}
    # A spider later found the pair on an artist's page (the earliest publication: the lineage),
    # and found 6.png on a page whose artist opted out of AI use.
    tables.append(ws, ScrapedImage, [
        ScrapedImage(source="deviantart", source_id="two-faces", image_url=urls["/art/pair.png"], status="ok",
                     page_url=PAGE, title="Two faces", artist="someone",
                     published_at=datetime(2020, 5, 1, tzinfo=timezone.utc), image_sha256=sha["/art/pair.png"]),
    ], "spider-test")
    process(ws, CFG, progress=False)
    tables.append(ws, ScrapedImage, [
        ScrapedImage(source="deviantart", source_id="six", image_url=urls["/art/6.png"], status="opted_out",
                     page_url="https://artist.example/deviation/six", opted_out=True, image_sha256=sha["/art/6.png"]),
    ], "spider-test")
    return ws, urls


@pytest.fixture
def setup(world, tmp_path):
    """A private copy of the processed workspace, its crops by picture path, and the URLs."""
    base, urls = world
    ws = Workspace.open(shutil.copytree(base.home, tmp_path / "copy"))
    path_of = {u: p for p, u in urls.items()}
    crops: dict[str, list[Item]] = {}
    for it in load_items(ws):
        crops.setdefault(path_of[it.image_url], []).append(it)
    for v in crops.values():
        v.sort(key=lambda it: it.crop_id)
    # What processing made of the pictures; the tests below rely on it.
    states = {p: [it.state for it in v] for p, v in crops.items()}
    assert states == {"/art/1.png": ["doubtful"], "/art/1-small.jpg": ["doubtful"], "/art/3.png": ["failed"],
                      "/art/5.png": ["passed"], "/art/6.png": ["passed"], "/art/pair.png": ["passed", "passed"],
                      "/art/grey.png": ["failed"]}, states
    assert crops["/art/3.png"][0].first_failed == "duplicate"  # its face is the pair's left face
    assert crops["/art/6.png"][0].opted_out
    return ws, {p: [it.crop_id for it in v] for p, v in crops.items()}, urls


def record(ws, changes, reviewer="ana", origin="human"):
    with ReviewStore(ws.review_db) as store:
        store.record(changes, reviewer, origin)


def test_the_version_holds_exactly_the_accepted_crops_with_their_lineage(setup):
    ws, crops, urls = setup
    [one], [five], [six], [three] = (crops[p] for p in ("/art/1.png", "/art/5.png", "/art/6.png", "/art/3.png"))
    left, right = crops["/art/pair.png"]
    record(ws, [Change(one, "accept", ("smile",)), Change(five, "reject"), Change(six, "accept"),
                Change(three, "skip"), Change(right, tags=("glasses",))])
    res = build_dataset(ws, "faces")
    assert res.written is not None and res.written.version == 1 and res.previous is None and res.diff is None
    rows = {r.crop_id: r for r in read_version(ws, "faces")}
    # Human accepts + rule accepts, minus the human reject, minus the opt-out (accepted or not).
    assert set(rows) == {one, left, right}
    assert res.counts == {"accepted_human": 1, "accepted_model": 0, "accepted_rule": 2, "rejected": 1,
                          "skipped": 1, "failed": 1, "undecided": 1, "opted_out": 1, "not_tagged": 0}
    assert rows[one].tags == ("smile",) and rows[right].tags == ("glasses",) and rows[left].tags == ()
    for r in rows.values():
        assert (ws.home / r.crop_path).is_file() and not r.crop_path.startswith("/")
        assert r.image_sha256 and r.split in ("train", "val")
    assert rows[one].image_url == urls["/art/1.png"] and rows[one].source == "url" and rows[one].page_url == ""
    for c in (left, right):
        assert rows[c].image_url == urls["/art/pair.png"] and rows[c].page_url == PAGE
        assert (rows[c].source, rows[c].artist, rows[c].title) == ("deviantart", "someone", "Two faces")
    meta = json.loads(read_metadata(res.written.path)["headshot.config"])
    assert meta["build"] == BuildConfig().as_dict() and meta["counts"] == res.counts
    assert sum(res.splits.values()) == 3 == sum(meta["splits"].values())


def test_a_rebuild_without_new_decisions_makes_no_new_version(setup):
    ws, crops, _ = setup
    first = build_dataset(ws, "faces")
    again = build_dataset(ws, "faces")
    assert again.written is None and again.latest.version == 1 and again.previous is None
    # Settings that change nothing in the content make no version either.
    assert build_dataset(ws, "faces", BuildConfig(min_accepted=2)).written is None
    assert [v.version for v in versions(ws, "faces")] == [1] and first.latest.path.is_file()
    [small] = crops["/art/1-small.jpg"]
    left, _ = crops["/art/pair.png"]
    record(ws, [Change(small, "accept"), Change(left, tags=("smile",))])
    second = build_dataset(ws, "faces")
    assert second.written.version == 2 and second.previous.version == 1
    assert [r.crop_id for r in second.diff.added] == [small] and second.diff.removed == []
    assert [(a.tags, b.tags) for a, b in second.diff.relabelled] == [((), ("smile",))]
    record(ws, [Change(small, "reject")], reviewer="ben")  # the last word wins, whoever says it
    third = build_dataset(ws, "faces")
    assert third.written.version == 3 and [r.crop_id for r in third.diff.removed] == [small]


def test_model_decisions_count_unless_turned_off(setup):
    ws, crops, _ = setup
    [small], [five] = crops["/art/1-small.jpg"], crops["/art/5.png"]
    left, right = crops["/art/pair.png"]
    record(ws, [Change(small, "accept"), Change(left, "reject")], reviewer="proposals", origin="model")
    with_model = build_dataset(ws, "m")
    assert {r.crop_id for r in with_model.rows} == {five, right, small}  # 1.png is doubtful and undecided
    assert with_model.counts["accepted_model"] == 1 and with_model.counts["rejected"] == 1
    without = build_dataset(ws, "m", BuildConfig(include_model=False))
    assert {r.crop_id for r in without.rows} == {five, left, right}  # the rule decides again
    assert without.written.version == 2


def test_without_rules_only_what_a_person_accepted(setup):
    ws, crops, _ = setup
    [one] = crops["/art/1.png"]
    record(ws, [Change(one, "accept")])
    res = build_dataset(ws, "picked", BuildConfig(accept_by_rule=False))
    assert [r.crop_id for r in res.rows] == [one]
    assert res.counts["accepted_rule"] == 0 and res.counts["undecided"] == 4  # 1-small, 5, pair x2


def test_too_few_accepted_is_an_error_and_writes_nothing(setup):
    ws, _, _ = setup
    with pytest.raises(DatasetError, match=r"only 3 crop\(s\) accepted, fewer than the minimum 10"):
        build_dataset(ws, "faces", BuildConfig(min_accepted=10))
    with pytest.raises(DatasetError, match="rules are off"):
        build_dataset(ws, "faces", BuildConfig(accept_by_rule=False))
    assert versions(ws, "faces") == []


def test_an_empty_workspace_and_a_busy_one_are_clear_errors(ws, setup):
    with pytest.raises(DatasetError, match="headshot process"):
        build_dataset(ws, "faces")
    busy, _, _ = setup
    with busy.writer_lock("process test"):
        with pytest.raises(WorkspaceBusy, match="process test"):
            build_dataset(busy, "faces")
    with pytest.raises(DatasetError, match="bad dataset name"):
        build_dataset(busy, "../x")


def test_split_keeps_a_picture_and_its_duplicate_group_together(setup):
    ws, crops, _ = setup
    items = load_items(ws)
    accept_all = {it.crop_id: State("accept", (), "ana", "human", "") for it in items}
    decisions = decide(items, accept_all, BuildConfig())
    together = [crops["/art/pair.png"], crops["/art/1.png"] + crops["/art/1-small.jpg"],
                crops["/art/3.png"] + crops["/art/pair.png"]]  # 3.png's face is a duplicate of the pair's left one
    seen_val = False
    for seed in map(str, range(20)):
        split = {r.crop_id: r.split for r in rows_for(items, decisions, BuildConfig(val_fraction=0.5, split_seed=seed))}
        for ids in together:
            assert len({split[c] for c in ids}) == 1, (seed, ids)
        seen_val |= "val" in split.values()
    assert seen_val


def fake(crop: str, image: str, group: str = "") -> Item:
    return Item(crop_id=crop, image_sha256=image, crop_path=f"crops/{crop}.png", detector="animeface",
                detector_score=1.0, group_id=group or crop)


def test_split_is_stable_and_close_to_the_fraction():
    items = [fake(f"c{i}-{j}", f"img{i:04d}") for i in range(1000) for j in range(i % 3 + 1)]
    items += [fake("dup-a", "imgA", "g1"), fake("dup-b", "imgB", "g1"), fake("dup-b2", "imgB", "g2"),
              fake("dup-c", "imgC", "g2")]  # A ~ B (group g1), B's other face ~ C (g2): one unit
    cfg = BuildConfig(val_fraction=0.2)
    decisions = decide(items, {}, cfg)  # all "passed" keepers: accepted by rule
    rows = rows_for(items, decisions, cfg)
    split = {r.crop_id: r.split for r in rows}
    by_image: dict[str, set] = {}
    for it in items:
        by_image.setdefault(it.image_sha256, set()).add(split[it.crop_id])
    assert all(len(s) == 1 for s in by_image.values())
    assert len({split[c] for c in ("dup-a", "dup-b", "dup-b2", "dup-c")}) == 1
    assert len(set(split_keys(items)[c] for c in ("dup-a", "dup-b", "dup-c"))) == 1
    val_images = sum(s == {"val"} for s in by_image.values())
    assert 0.16 < val_images / len(by_image) < 0.24
    # More pictures later move no earlier crop; another seed draws another split.
    more = items + [fake(f"new{i}", f"new{i:04d}") for i in range(300)]
    later = {r.crop_id: r.split for r in rows_for(more, decide(more, {}, cfg), cfg)}
    assert all(later[c] == s for c, s in split.items())
    other = {r.crop_id: r.split for r in rows_for(items, decisions, replace(cfg, split_seed="other"))}
    assert other != split


def test_a_version_of_only_the_tagged_crops_carries_their_attributes(setup):
    from typer.testing import CliRunner

    from curation.attributes import update_attributes
    from pipelines.cli import app
    from replicas.drawn import face_colours

    ws, crops, urls = setup
    [one], [five] = crops["/art/1.png"], crops["/art/5.png"]
    left, right = crops["/art/pair.png"]
    # The pair's page was scraped with a tag; a person tags one and accepts two of the crops.
    tables.append(ws, ScrapedImage, [ScrapedImage(
        source="deviantart", source_id="two-faces-tags", image_url=urls["/art/pair.png"], status="ok",
        tags=("disney style",), character="Twins",
        image_sha256=next(r.image_sha256 for r in tables.read_records(ws, ScrapedImage)
                          if r.image_url == urls["/art/pair.png"]))], "spider-tags")
    record(ws, [Change(one, "accept", ("disney style",)), Change(five, tags=("not a headshot",))])
    assert update_attributes(ws).estimated >= 4
    only = build_dataset(ws, "fursona", BuildConfig(tags=("disney style",)))
    rows = {r.crop_id: r for r in read_version(ws, "fursona")}
    assert set(rows) == {one, left, right} and only.counts["not_tagged"] == 1  # 5.png: accepted by rule, untagged
    assert rows[one].tags == ("disney style",) and rows[left].tags == ()  # a person's tags; scraped ones below
    assert {"tag=disney style", "character=Twins"} <= set(rows[left].attributes)
    hair = face_colours(1)[0]
    assert f"hair={hair}" in rows[one].attributes  # the estimate, drawn in code as `hair`
    # A colour is a tag too; and excluding works on the same labels.
    by_hair = build_dataset(ws, f"hair-{hair}", BuildConfig(tags=(f"hair={hair}",)))
    assert one in {r.crop_id for r in by_hair.rows}
    assert all(f"hair={hair}" in r.attributes for r in by_hair.rows)
    rest = build_dataset(ws, "rest", BuildConfig(exclude_tags=("not a headshot",)))
    assert {r.crop_id for r in rest.rows} == {one, left, right}
    assert {d.crop_id: d.why for d in rest.decisions}[five] == "left out: carries the excluded not a headshot"
    both = build_dataset(ws, "both", BuildConfig(tags=("disney style", "character=Twins")))
    assert {r.crop_id for r in both.rows} == {left, right}  # every one of the tags asked for
    assert {d.crop_id: d.why for d in both.decisions}[one] == "left out: does not carry character=Twins"
    # The command line says it too.
    out = CliRunner().invoke(app, ["--home", str(ws.home), "dataset", "build", "tagged", "--tag", "disney style"],
                             catch_exceptions=False)
    assert out.exit_code == 0 and "not tagged as asked 1" in out.output, out.output
