"""HeadshotConfig: TOML both ways, errors that name the key, `headshot init`, and the CLI
reading the project config with its flags winning (real files, the real CLI)."""

import json
import re
import tomllib
from dataclasses import is_dataclass
from datetime import datetime

import pytest
from PIL import Image
from typer.testing import CliRunner

from manifests import tables
from manifests.records import FaceCrop, ScrapedImage, StoredImage
from manifests.workspace import Workspace
from pipelines.cli import app
from pipelines.config import ConfigError, HeadshotConfig, Source, cron_problem, schema
from replicas.drawn import draw_character, encode
from replicas.sites.getchu import GetchuReplica
from replicas.sites.server import Replica

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        HeadshotConfig.from_toml(text)
    return caught.value.problems


NON_DEFAULT = """
home = "/data/héadshot \\"ws\\""

[[sources]]
site = "getchu"
since = "2015-05"
until = "2015-06"
limit = 200
settings = { GETCHU_BASE_URL = "http://127.0.0.1:8080", DOWNLOAD_DELAY = 0.5, AUTOTHROTTLE_ENABLED = false }
args = { brand = "123" }

[[sources]]
site = "deviantart"
query = "anime girl\\tportrait"

[ingest]
paths = ["art", "urls.txt"]
min_side = 64
max_bytes = 1000000

[process]
dedup_policy = "largest,earliest"
workers = 3

[process.detector]
detector = "lbp"
members = ["lbp", "haar"]
rotations = []
scale_factor = 1.05

[process.crop]
margin = 0
size = 64
pad = "white"

[process.filters]
min_sharpness = 0.4
min_published = 2015-01-01

[process.hashing]
bits = 256
radius = 20

[dataset]
name = "faces-2"
min_accepted = 500
require_empty_queue = true
val_fraction = 0.0

[train]
preset = "sngan"
steps = 5000
device = "cpu"
ema_decay = 0.99
diff_policy = ["translation", "swap"]

[schedule]
build = "0 3 * * *"
"train-weekly" = "30 4 * * sun"
"""


def test_a_non_default_config_survives_toml_both_ways():
    cfg = HeadshotConfig.from_toml(NON_DEFAULT)
    assert cfg != HeadshotConfig()
    assert cfg.process.crop.margin == 0.0 and isinstance(cfg.process.crop.margin, float)
    assert cfg.process.filters.min_published == datetime(2015, 1, 1)
    assert cfg.process.detector.rotations == () and cfg.process.hashing.bits == 256
    assert cfg.dataset.build.min_accepted == 500 and cfg.dataset.require_empty_queue
    assert cfg.train.more == {"ema_decay": 0.99, "diff_policy": ("translation", "swap")}
    assert cfg.sources[1].query == "anime girl\tportrait"
    text = cfg.to_toml()
    back = HeadshotConfig.from_toml(text)
    assert back == cfg and back.as_dict() == cfg.as_dict()
    assert tomllib.loads(text) == cfg.as_dict()  # what is written is plain TOML, not just our own reading
    assert HeadshotConfig.from_dict(cfg.as_dict()) == cfg
    assert HeadshotConfig.from_toml(HeadshotConfig().to_toml()) == HeadshotConfig()


def test_the_stage_parts_feed_the_stages():
    cfg = HeadshotConfig.from_toml(NON_DEFAULT)
    getchu = cfg.source("getchu")
    assert getchu.spider_args() == {"brand": "123", "since": "2015-05", "until": "2015-06", "limit": "200"}
    assert getchu.scrapy_settings() == {"GETCHU_BASE_URL": "http://127.0.0.1:8080", "DOWNLOAD_DELAY": "0.5",
                                        "AUTOTHROTTLE_ENABLED": "False"}
    assert cfg.source("myanimelist") is None
    ingest = cfg.ingest.stage()
    assert ingest.decode.min_side == 64 and ingest.decode.max_bytes == ingest.fetch.max_bytes == 1_000_000
    assert cfg.ingest.crawl_settings() == {"HEADSHOT_MIN_SIDE": "64", "HEADSHOT_MAX_BYTES": "1000000"}
    assert HeadshotConfig().ingest.crawl_settings() == {}
    # [train] passes on what it changes only: an untouched table leaves a resumed run as it was.
    assert HeadshotConfig().train.settings() == {}
    assert cfg.train.settings() == {"preset": "sngan", "steps": 5000, "device": "cpu", "ema_decay": 0.99,
                                    "diff_policy": ("translation", "swap")}


def test_set_flags_read_values_as_the_keys_types():
    cfg = HeadshotConfig().with_sets(["filters.min_sharpness=0.4", "detector.members=lbp,haar",
                                      "filters.min_published=2016-02-03", "dedup_policy=largest",
                                      "process.crop.size=64", "detector.flip=yes"], "process")
    p = cfg.process
    assert p.filters.min_sharpness == 0.4 and p.detector.members == ("lbp", "haar") and p.detector.flip is True
    assert p.filters.min_published == datetime(2016, 2, 3) and p.dedup_policy == "largest" and p.crop.size == 64
    assert HeadshotConfig().with_sets(["dataset.split_seed=123"]).dataset.build.split_seed == "123"
    with pytest.raises(ConfigError, match=r"process\.crop\.margin = \"wide\": expected a number"):
        HeadshotConfig().with_sets(["crop.margin=wide"], "process")
    with pytest.raises(ConfigError, match="write KEY=VALUE"):
        HeadshotConfig().with_sets(["crop.margin"], "process")


@pytest.mark.parametrize("text, expected", [
    # unknown key, with the nearest known one
    ("[process.filters]\nmin_sharpnes = 0.4",
     "process.filters.min_sharpnes: unknown key; did you mean process.filters.min_sharpness?"),
    ("[train]\nema_decey = 0.9", "train.ema_decey: unknown key; did you mean train.ema_decay?"),
    ("[procss]\nworkers = 1", "procss: unknown key; did you mean process?"),
    # wrong type
    ('[process.crop]\nmargin = "wide"', 'process.crop.margin = "wide": expected a number'),
    ("[ingest]\nmin_side = 40.5", "ingest.min_side = 40.5: expected a whole number"),
    ("[dataset]\nrequire_empty_queue = 1", "dataset.require_empty_queue = 1: expected true or false"),
    ("process = 3", "process: expected a table, got 3"),
    # out of range
    ("[process.filters]\nmin_sharpness = -0.5", "process.filters.min_sharpness = -0.5: out of range: must be at least 0"),
    ("[process.crop]\nsize = 100", "process.crop.size = 100: must be one of 64|128|256"),
    ("[dataset]\nval_fraction = 1.0", "dataset.val_fraction = 1.0: out of range: must be at least 0 and below 1"),
    ("[train]\nswap_p = 0.5", "train.swap_p = 0.5: training setting swap_p = 0.5 is out of range"),
    # bad site
    ('[[sources]]\nsite = "pixiv"', 'sources[1].site = "pixiv": must be one of getchu|myanimelist|deviantart'),
    ("[[sources]]\nlimit = 5", "sources[1].site: missing; give one of getchu|myanimelist|deviantart"),
    # bad months
    ('[[sources]]\nsite = "getchu"\n[[sources]]\nsite = "getchu"\nsince = "2015-13"',
     'sources[2].since = "2015-13": not a month: write YYYY-MM'),
    ('[[sources]]\nsite = "getchu"\nuntil = "2015/06"', 'sources[1].until = "2015/06": not a month'),
    ('[[sources]]\nsite = "getchu"\nsince = "2015-07"\nuntil = "2015-06"',
     "sources[1]: since 2015-07 is after until 2015-06"),
    # bad cron lines
    ('[schedule]\nbuild = "0 25 * * *"', "schedule.build = \"0 25 * * *\": hour field '25' is out of range 0-23"),
    ('[schedule]\nbuild = "0 3 * *"', "schedule.build = \"0 3 * *\": a cron line has 5 fields"),
    ('[schedule]\nnightly = "*/0 3 * * *"', "schedule.nightly = \"*/0 3 * * *\": minute field '*/0'"),
])
def test_every_problem_names_the_key_the_value_and_what_is_accepted(text, expected):
    assert any(p.startswith(expected) for p in problems_of(text)), problems_of(text)


def test_every_problem_of_a_file_is_one_line_of_one_error(tmp_path):
    path = tmp_path / "headshot.toml"
    path.write_text('home = "ws"\n[process.crop]\nsize = 100\nmargn = 1\n[schedule]\nb = "61 * * * *"\n')
    with pytest.raises(ConfigError) as caught:
        HeadshotConfig.from_toml(path)
    problems = caught.value.problems
    assert str(caught.value) == "\n".join(problems) and len(problems) == 3
    assert all(p.startswith(f"{path}: ") for p in problems)
    with pytest.raises(ConfigError, match="not valid TOML"):
        HeadshotConfig.from_toml("[process\n")


def test_cron_lines():
    for good in ("0 3 * * *", "*/15 0-6,22-23 1,15 jan-mar mon-fri", "0 0 * * 7", "5 4 31 12 sun"):
        assert cron_problem(good) is None, good
    for bad in ("0 3 * * * *", "@daily", "60 * * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8", "5-1 * * * *",
                "x * * * *", "0 0 * foo *"):
        assert cron_problem(bad), bad


def test_init_writes_the_defaults_each_key_with_a_comment(tmp_path):
    target = tmp_path / "headshot.toml"
    done = cli("init", target)
    assert done.exit_code == 0 and "wrote" in done.output
    text = target.read_text()
    assert HeadshotConfig.from_toml(text) == HeadshotConfig()
    lines = text.splitlines()
    keys = [i for i, line in enumerate(lines) if re.match(r"^[A-Za-z0-9_\"-]+ = ", line)]
    assert len(keys) >= 50
    for i in keys:  # a one-line comment above each key, saying what it does and what it accepts
        assert lines[i - 1].startswith("# ") and ";" in lines[i - 1], lines[i - 1:i + 1]
    written = {f"{table}.{lines[i].split(' = ')[0]}".lstrip(".") for table, i in _tables(lines, keys)}
    leaves = {k for k, hint in schema().items() if not is_dataclass(hint) and not k.startswith("sources")
              and k != "schedule"}
    assert written == leaves
    # The commented-out [[sources]] example is a valid source once uncommented.
    start = lines.index("# [[sources]]")
    example = [line[2:] for line in lines[start:lines.index("", start)]]
    assert HeadshotConfig.from_toml("\n".join(example)).sources == (Source("getchu", since="2015-05",
                                                                           until="2015-06", limit=200),)
    # Refuses to overwrite without --force; a folder gets headshot.toml in it.
    target.write_text("home = 'mine'\n")
    again = cli("init", target)
    assert again.exit_code == 2 and "--force" in again.output and target.read_text() == "home = 'mine'\n"
    assert cli("init", target, "--force").exit_code == 0 and target.read_text() == text
    (tmp_path / "proj").mkdir()
    assert cli("init", tmp_path / "proj").exit_code == 0 and (tmp_path / "proj" / "headshot.toml").read_text() == text


def _tables(lines, keys):
    table = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            table = line.strip("[]")
        if i in keys:
            yield table, i


def test_help_names_the_config():
    assert "--config" in cli("--help").output
    assert "Example: headshot init" in cli("init", "--help").output


def test_a_missing_config_file_is_one_clear_line(tmp_path):
    done = cli("--config", tmp_path / "nope.toml", "status")
    assert done.exit_code == 2
    assert done.output.strip() == f"headshot: error: --config {tmp_path / 'nope.toml'}: no such file"


def test_a_bad_config_stops_every_command_with_its_problems(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[process.crop]\nsize = 100\n[[sources]]\nsite = "pixiv"\n')
    done = cli("--config", path, "ingest", tmp_path)
    assert done.exit_code == 2
    assert done.output.splitlines() == [  # in the file's order
        f"headshot: error: {path}: process.crop.size = 100: must be one of 64|128|256",
        f"headshot: error: {path}: sources[1].site = \"pixiv\": must be one of getchu|myanimelist|deviantart",
    ]


def _art(folder, characters=(1, 3)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in characters:
        (folder / f"f{i}.png").write_bytes(encode(draw_character(i, 512), "PNG"))
    return folder


def test_home_from_the_file_and_home_flag_over_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HEADSHOT_HOME", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / "headshot.toml").write_text('home = "A"\n[ingest]\npaths = ["art"]\n')
    _art(project / "art", (1,))
    monkeypatch.chdir(tmp_path)  # elsewhere: the file's relative paths are relative to its folder
    done = cli("--config", project / "headshot.toml", "ingest", "--no-progress")
    assert done.exit_code == 0, done.output
    assert "1 inputs: 1 new images" in done.output
    assert (project / "A" / "manifests").is_dir() and not (tmp_path / "A").exists()
    flag = cli("--config", project / "headshot.toml", "--home", tmp_path / "B", "ingest", "--no-progress")
    assert flag.exit_code == 0 and (tmp_path / "B" / "manifests").is_dir()
    st = json.loads(cli("--config", project / "headshot.toml", "--home", tmp_path / "B", "status", "--json").output)
    assert st["home"] == str(tmp_path / "B")


def test_headshot_toml_in_the_current_folder_is_read_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("HEADSHOT_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "headshot.toml").write_text('home = "picked"\n')
    st = json.loads(cli("status", "--json").output)
    assert st["home"] == str(tmp_path / "picked")
    (tmp_path / "headshot.toml").write_text('home = 3\n')
    bad = cli("status")
    assert bad.exit_code == 2 and "headshot.toml: home = 3: expected text" in bad.output


def _crop_sizes(home) -> set:
    return set(tables.read_table(Workspace.open(home), FaceCrop, ["size"]).column("size").to_pylist())


def test_process_and_dataset_build_start_from_the_file_and_flags_win(tmp_path):
    art = _art(tmp_path / "art", (1, 3))
    (art / "f1-small.jpg").write_bytes(encode(draw_character(1, 512).resize((384, 384), Image.LANCZOS), "JPEG",
                                              quality=90))
    conf = tmp_path / "headshot.toml"
    conf.write_text('home = "ws"\n'
                    '[process]\nworkers = 1\n[process.detector]\ndetector = "animeface"\n[process.crop]\nsize = 64\n'
                    '[dataset]\nname = "mine"\nmin_accepted = 50\n')
    home = tmp_path / "ws"
    assert cli("--config", conf, "ingest", "--no-progress", art).exit_code == 0
    done = cli("--config", conf, "process", "--no-progress")
    assert done.exit_code == 0, done.output
    assert "3 images detected" in done.output and _crop_sizes(home) == {64}  # the file's detector and size
    flag = cli("--config", conf, "process", "--no-progress", "--size", "256")
    assert flag.exit_code == 0, flag.output
    assert "re-cropped" in flag.output and 256 in _crop_sizes(home)
    bad = cli("--config", conf, "process", "--set", "crop.margin=5")
    assert bad.exit_code == 2 and "process.crop.margin = 5: out of range: must be 0 to 2" in bad.output
    # [dataset]: its name and minimum, then the flags over them.
    few = cli("--config", conf, "dataset", "build")
    assert few.exit_code == 2 and "fewer than the minimum 50" in few.output
    built = cli("--config", conf, "dataset", "build", "--min-accepted", "1")
    assert built.exit_code == 0 and "wrote mine v1" in built.output, built.output
    conf.write_text(conf.read_text() + "require_empty_queue = true\n")
    queued = cli("--config", conf, "dataset", "build", "--min-accepted", "1")
    assert queued.exit_code == 2 and "wait in the review queue" in queued.output and "--allow-queue" in queued.output
    allowed = cli("--config", conf, "dataset", "build", "--min-accepted", "1", "--allow-queue")
    assert allowed.exit_code == 0 and "no new version: mine v1" in allowed.output


def test_train_starts_from_the_projects_train_table(tmp_path):
    from replicas.drawn import write_faces

    write_faces(tmp_path / "faces", 16, size=64)
    conf = tmp_path / "headshot.toml"
    conf.write_text('home = "ws"\n[train]\npreset = "sngan"\nsteps = 50\nbatch_size = 4\ndevice = "cpu"\n'
                    'ngf = 8\nndf = 8\nsample_every = 0\neval_every = 0\nbest_metric = "none"\n'
                    'precision = "fp32"\nchannels_last = "off"\nthreads = 2\n')
    own = tmp_path / "train.toml"  # train's own --config: over the project's [train]
    own.write_text("[train]\nbatch_size = 2\n")
    done = cli("--config", conf, "train", "--images", tmp_path / "faces", "--steps", "2", "--config", own,
               "--name", "r1", "--no-progress", "--json")
    assert done.exit_code == 0, done.output
    saved = json.loads((tmp_path / "ws" / "runs" / "r1" / "config.json").read_text())["config"]
    assert saved["steps"] == 2  # the flag
    assert saved["batch_size"] == 2  # train --config
    assert saved["preset"] == "sngan" and saved["spectral_norm"] is True and saved["ngf"] == 8  # the project


def test_crawl_starts_from_the_sources_table_and_flags_win(tmp_path):
    with Replica() as r:
        GetchuReplica(r, None, synthetic_ids=[910001, 910002])
        conf = tmp_path / "headshot.toml"
        conf.write_text('home = "ws"\n[[sources]]\nsite = "getchu"\nargs = { ids = "910001" }\n'
                        f'settings = {{ GETCHU_BASE_URL = "{r.base}", DOWNLOAD_DELAY = 0, '
                        'AUTOTHROTTLE_ENABLED = false, LOG_LEVEL = "WARNING" }\n'
                        '[ingest]\nmin_side = 5000\n')  # the crawl judges images by [ingest] as well
        done = cli("--config", conf, "crawl", "getchu")
        assert done.exit_code == 0, done.output
        flag = cli("--config", conf, "crawl", "getchu", "--arg", "ids=910002", "--set", "HEADSHOT_MIN_SIDE=1")
        assert flag.exit_code == 0, flag.output
    ws = Workspace.open(tmp_path / "ws")
    scraped = {s.source_id: s for s in tables.read_records(ws, ScrapedImage) if not s.source_id.startswith("page:")}
    stored = {s.image_sha256: s.status for s in tables.read_records(ws, StoredImage)}
    first = [s for k, s in scraped.items() if k.startswith("910001/")]
    second = [s for k, s in scraped.items() if k.startswith("910002/")]
    assert len(first) == 4 and len(second) == 4 and len(scraped) == 8
    assert {stored[s.image_sha256] for s in first} == {"too_small"}
    assert {stored[s.image_sha256] for s in second} == {"ok"}
