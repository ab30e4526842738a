from pipelines.demo import run_demo


def test_demo_runs_to_the_end_and_reruns_without_duplicates(tmp_path):
    lines = []
    st = run_demo(str(tmp_path / "demo"), count=9, echo=lines.append)
    stored = st["stages"]["stored"]
    assert stored["by_status"]["ok"] == 9
    assert stored["total"] == 15  # 9 artworks + 6 broken files, each a row
    assert any("headshot --home" in line for line in lines)
    again = run_demo(str(tmp_path / "demo"), count=9, echo=lines.append)
    assert again["stages"] == st["stages"]
