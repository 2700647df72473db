"""The demo section runs end to end (shortened schedules) and writes its table and figure."""

from synthfuse.retrain.demo import run
from synthfuse.shared.demo import DemoContext


def test_demo_section_writes_table_and_plot(tmp_path):
    ctx = DemoContext(out_dir=tmp_path)
    headline = run(ctx, hidden=(16,), ensemble=2, epoch_scale=0.05)
    assert (tmp_path / "retrain_methods.md").exists() and (tmp_path / "retrain_paths.png").exists()
    table = (tmp_path / "retrain_methods.md").read_text()
    for label in ("θ* incumbent", "θ† superior", "θ‡ kdt", "θ‡ wsft", "θ‡ otwi", "θ‡ frr", "θ‡ til", "θ‡ fdd",
                  "θ‡ dbsd", "θ‡ sb", "time (s)"):
        assert label in table
    assert headline["barrier_aligned"] <= headline["barrier_naive"] + 1e-6
    assert set(headline) >= {"kdt_dominates", "otwi_dominates", "til_dominates", "sb_dominates",
                             "sb_midpoint_loss_le_line"}
