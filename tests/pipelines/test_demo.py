from pipelines.demo import DEMO_IDS, run_demo


def test_demo_crawls_ingests_and_reruns_without_duplicates(tmp_path):
    lines = []
    st = run_demo(str(tmp_path / "demo"), count=9, echo=lines.append)
    scraped = st["stages"]["scraped"]["by_status"]
    # 6 replica items x 2 characters x (portrait + full body), 6 item pages + 2 month lists, 9 + 6 local files.
    assert scraped["ok"] == len(DEMO_IDS) * 4 + 15
    assert scraped["page"] == len(DEMO_IDS) + 2  # item pages and the two month lists
    stored = st["stages"]["stored"]["by_status"]
    assert stored["ok"] == len(DEMO_IDS) * 4 + 9
    assert sum(stored.values()) == len(DEMO_IDS) * 4 + 15  # every broken file is a row too
    assert any("headshot --home" in line for line in lines)
    # Faces were found in the crawled and generated art, and the report says what was kept.
    assert st["stages"]["crops"]["total"] > 0
    assert any(" kept, " in line for line in lines)
    # It ends with a dataset version of what passed, and the way to the review queue.
    assert st["datasets"]["demo-faces"]["latest_version"] == 1 and st["datasets"]["demo-faces"]["rows"] > 0
    assert st["review"]["doubtful"] == st["review"]["left"] and st["review"]["crops"] == st["stages"]["crops"]["total"]
    assert any(" review " in line and "127.0.0.1:8765" in line for line in lines)
    again = run_demo(str(tmp_path / "demo"), count=9, echo=lines.append)
    assert again["stages"] == st["stages"]
    assert again["datasets"]["demo-faces"]["latest_version"] == 1  # nothing changed: no new version
    assert any("no new version" in line for line in lines)
    # The demo's status is `headshot status --json`'s, runs included: one function makes both.
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    out = CliRunner().invoke(app, ["--home", str(tmp_path / "demo"), "status", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == json.loads(json.dumps(again, default=str, sort_keys=True))
    assert "runs" in again
