from types import SimpleNamespace

from synthfuse.shared import demo


def test_shared_format_table_aligns_and_formats():
    md = demo.format_table([{"model": "a", "rmse": 0.123456}, {"model": "bb", "rmse": 1.0, "n": 3}])
    lines = md.strip().splitlines()
    assert lines[0].split("|")[1].strip() == "model"
    assert "0.1235" in md and "| n" in lines[0]
    assert len({len(line) for line in lines}) == 1  # every row padded to the same width


def test_shared_demo_runner_runs_sections_and_reports_missing(tmp_path, monkeypatch):
    calls = []

    def good(ctx):
        calls.append(ctx.full)
        ctx.table("scores", [{"model": "m", "score": 0.5}])
        return {"score": 0.5}

    def bad(ctx):
        raise ValueError("boom")

    sections = {"acr": SimpleNamespace(load=lambda: good), "koda": SimpleNamespace(load=lambda: bad)}
    monkeypatch.setattr(demo, "_sections", lambda: sections)
    monkeypatch.setattr(demo, "entry_points", lambda group: [SimpleNamespace(name="synthe")])
    rows, ok = demo.run_demos(tmp_path, full=True)
    status = {r["section"]: r["status"] for r in rows}
    assert calls == [True]
    assert status["acr"] == "ok"
    assert status["koda"].startswith("FAILED") and not ok
    assert status["synthe"] == "no demo yet"
    assert status["retrain"] == "not installed (pip install synthfuse-retrain)"
    assert (tmp_path / "acr" / "scores.md").exists() and (tmp_path / "acr" / "scores.csv").exists()
    assert "acr" in (tmp_path / "SUMMARY.md").read_text()
