"""`headshot demo` end to end through the build and train-when-ready flows (on the module's
Prefect test server), with a tiny model so it trains in seconds; run twice, the second run finds
nothing new to version or train."""

from __future__ import annotations

import json
import tomllib

from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import HeadshotConfig
from pipelines.demo import DEMO_DATASET, DEMO_IDS, run_demo
from tests.pipelines.test_flows import TINY_TRAIN


def test_demo_runs_both_flows_and_a_rerun_versions_and_trains_nothing_new(prefect_api, tmp_path):
    home = tmp_path / "demo"
    lines: list[str] = []
    out = run_demo(str(home), count=9, echo=lines.append, train=TINY_TRAIN)
    built, trained, st = out["build"], out["train"], out["status"]
    # The crawl: 6 replica items x 2 characters x (portrait + full body), 6 item pages + 2 month lists.
    src = built["sources"]["sources[1] getchu"]
    assert src["ok"] and src["rows"]["ok"] == len(DEMO_IDS) * 4 and src["rows"]["page"] == len(DEMO_IDS) + 2
    assert built["failed"] == []
    # 9 drawn pictures and 6 broken files ingested: every broken file is a row with its reason.
    assert built["ingest"]["inputs"] == 15
    stored = st["stages"]["stored"]["by_status"]
    assert stored["ok"] == len(DEMO_IDS) * 4 + 9 and sum(stored.values()) == len(DEMO_IDS) * 4 + 15
    assert st["stages"]["crops"]["total"] == built["process"]["crops_new"] > 0
    # A dataset version of what passed, with the doubtful rest left open for a person.
    d = built["dataset"]
    assert d["version"] == 1 and st["datasets"][DEMO_DATASET]["latest_version"] == 1 and d["rows"] > 0
    assert st["review"]["doubtful"] == st["review"]["left"] and st["review"]["crops"] == st["stages"]["crops"]["total"]
    # Training on that version, its samples and its evaluation.
    assert trained["trained"] and trained["training"]["step"] == TINY_TRAIN["steps"]
    run = home / "runs" / trained["run"]
    assert (run / "checkpoints" / "best.pt").is_file() and list((run / "samples").glob("step-*.png"))
    assert trained["evaluation"]["n_fake"] == TINY_TRAIN["eval_samples"]
    # Where everything is and what to run next.
    text = "\n".join(lines)
    assert f"{run}/" in text and "headshot flow build --config" in text and "127.0.0.1:8765" in text
    saved = tomllib.loads((home / "headshot.toml").read_text())
    assert "sources" not in saved and saved["dataset"]["name"] == DEMO_DATASET
    assert HeadshotConfig.from_dict(saved).train.steps == TINY_TRAIN["steps"]

    again = run_demo(str(home), count=9, echo=lines.append, train=TINY_TRAIN)
    assert again["build"]["dataset"]["version"] is None and "already holds exactly this" in again["build"]["dataset"]["why"]
    assert not again["train"]["trained"] and trained["run"] in again["train"]["why"]
    assert again["status"]["stages"] == st["stages"]  # the crawl and the files again: no new row
    assert len([p for p in (home / "runs").iterdir() if p.is_dir()]) == 1
    # The demo's status is `headshot status --json`'s: one function makes both.
    res = CliRunner().invoke(app, ["--home", str(home), "status", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == json.loads(json.dumps(again["status"], default=str, sort_keys=True))
