"""Verified synthesis: program checks and rewards on hand-written programs, prompts, summary, the CLI."""

import json

import pytest

from synthfuse.koda.analysis import verify
from synthfuse.koda.examples import TEXTBOOK
from synthfuse.koda.lang import load, parse
from synthfuse.koda.synthesis.check import ProgramCheck, canonical_form, check_program, verifier_reward
from synthfuse.koda.analysis import theta_of
from synthfuse.koda.data.families import THETA_CLASSES
from synthfuse.koda.synthesis.prompts import class_of, class_theta, make_prompts, resolve_class
from synthfuse.koda.synthesis.run import NO_CLASS, confusion, summarize

MERGE_SORT = TEXTBOOK["merge_sort"][0]
BAD = {
    "syntax": ("def f(n: int) { work(n) }", "syntax"),
    "type": ("def f(n: int) { let b = true; work(b + 1); }", "type"),
    "two params": ("def f(n: int, m: int) { work(n); }", "one int"),
    "undefined call": ("def f(n: int) { g(n / 2); }", "type"),
}


def test_checks_and_rewards_of_hand_written_programs():
    good = check_program(MERGE_SORT, "n log n", signature="def merge_sort(n: int)")
    assert (good.parsed, good.well_typed, good.theta_match, good.header_match) == (True, True, True, True)
    assert good.static_theta == "n log n" and good.reason == ""
    assert verifier_reward(good) == pytest.approx(1.3)
    wrong_class = check_program(MERGE_SORT, "n^2", signature="def sort(n: int)")
    assert (wrong_class.parsed, wrong_class.well_typed, wrong_class.theta_match) == (True, True, False)
    assert wrong_class.header_match is False and "n log n" in wrong_class.reason
    assert verifier_reward(wrong_class) == pytest.approx(0.3)
    assert verifier_reward(wrong_class, parse=1.0, typecheck=0.0, theta=5.0) == pytest.approx(1.0)
    for source, reason in BAD.values():
        bad = check_program(source, "n")
        assert not bad.theta_match and reason in bad.reason
        assert verifier_reward(bad) == pytest.approx(0.1 if bad.parsed else 0.0)
    # A program whose loop never ends: well typed, the verifier's budget stops it, no match.
    spin = check_program("def f(n: int) { let i = 0; while i < 1 { work(1); } }", "n", step_budget=2000)
    assert spin.well_typed and not spin.theta_match
    with pytest.raises(ValueError, match="theta"):
        verifier_reward(good, theta=-1.0)
    with pytest.raises(ValueError, match="unknown Θ class"):
        check_program(MERGE_SORT, "n log n log n")


def test_every_textbook_program_matches_its_class_and_agrees_with_verify():
    for source, theta, _ in TEXTBOOK.values():
        label = resolve_class(theta)
        result = check_program(source, label)
        assert result.theta_match == verify(load(source), class_theta(label)).verified is True


def test_canonical_form_ignores_names_only():
    a = canonical_form(parse("def f(n: int) { if n <= 1 { return; } f(n / 2); work(log2(n)); }"))
    b = canonical_form(parse("def search(m: int) {\n if m <= 1 { return; }\n search(m / 2);\n work(log2(m)); }"))
    c = canonical_form(parse("def f(n: int) { if n <= 1 { return; } f(n / 3); work(log2(n)); }"))
    assert a == b != c
    assert "log2" in a and "v0" in a and "search" not in b


def test_resolve_class_and_prompts():
    assert resolve_class("n log n") == "n log n"
    assert resolve_class("Theta(n*log(n))") == "n log n"
    assert resolve_class("n^1.5") == "n^(3/2)"
    assert resolve_class("n^log2(3)") == "n^log2(3)"
    for bad in ("2^n", "n log n log n +", "T(n)"):
        with pytest.raises(ValueError):
            resolve_class(bad)
    prompts = make_prompts(40, seed=3, signature_prob=0.5)
    assert prompts == make_prompts(40, seed=3, signature_prob=0.5)
    assert prompts != make_prompts(40, seed=4, signature_prob=0.5)
    assert [p.theta_class for p in prompts[:17]] == list(dict.fromkeys(p.theta_class for p in prompts))
    headers = [p.signature for p in prompts if p.signature]
    assert 8 <= len(headers) <= 32
    for h in headers:
        assert len(parse(h + " { return; }" if "->" not in h else h + " { return 1; }").entry.params) == 1
    assert {p.theta_class for p in make_prompts(6, ["n log n", "n^2"], signature_prob=0.0)} == {"n log n", "n^2"}
    with pytest.raises(ValueError):
        make_prompts(0)


def test_summarize_counts_rates_and_distinct_programs():
    checks = [check_program(MERGE_SORT, "n log n"),
              check_program(MERGE_SORT.replace("merge_sort", "ms").replace("i in", "k in"), "n log n"),
              check_program(TEXTBOOK["karatsuba"][0], "n log n"),
              check_program("def f(n: int) {", "n")]
    s = summarize(checks)
    assert s["programs"] == 4 and s["parse %"] == 75.0 and s["well-typed %"] == 75.0 and s["Θ-match %"] == 50.0
    assert s["distinct"] == 2 and s["distinct verified"] == 1  # the first two differ only in names
    with pytest.raises(ValueError):
        summarize([])
    assert isinstance(checks[0], ProgramCheck)
    # What each program is, by the static route, against what was requested.
    assert [c.static_class for c in checks] == ["n log n", "n log n", "n^log2(3)", None]
    assert confusion(checks) == {"n log n": {"n log n": 2, "n^log2(3)": 1}, "n": {NO_CLASS: 1}}


def test_class_of_inverts_class_theta():
    for name in THETA_CLASSES:
        assert class_of(class_theta(name)) == name
    assert class_of(theta_of("n^4")) is None and class_of(theta_of("n log n")) == "n log n"


def test_synthesize_cli(tmp_path, capsys):
    from synthfuse.koda.cli import main
    from synthfuse.koda.train.config import load_config
    from synthfuse.koda.train.trainer import KodaTrainer

    cfg = load_config({"model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "n_experts": 2,
                                 "ball_dim": 2, "ball_layer": 0, "max_len": 160},
                       "data": {"n_programs": 30}, "loss": {"wgan": {"enabled": False}},
                       "train": {"steps": 1, "batch_size": 4, "progress": False}})
    KodaTrainer(cfg, out_dir=tmp_path, resume=False).fit()
    out = tmp_path / "programs.jsonl"
    args = ["synthesize", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--theta", "n log n", "-n", "3",
            "--max-new-tokens", "30", "--no-progress", "--method"]
    assert main(args + ["sample", "--seed", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parse %" in printed and "Θ-match %" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["theta_class"] for r in rows} == {"n log n"}
    for row in rows:  # the verdicts are those of the checker on the written source
        again = check_program(row["source"], "n log n", signature=None)
        assert (row["parsed"], row["well_typed"], row["theta_match"]) == (again.parsed, again.well_typed,
                                                                          again.theta_match)
    assert main(args + ["contrastive"]) == 0
    assert main(args + ["contrastive", "--temperature", "1.0", "--top-k", "2", "--seed", "3"]) == 0
    assert main(args + ["contrastive", "--temperature", "-1"]) == 2
    assert "temperature must be a finite number >= 0" in capsys.readouterr().err
    assert main(args[:2] + [str(tmp_path / "missing.pt")] + args[3:] + ["greedy"]) == 2
    assert main(args[:4] + ["n^4"] + args[5:] + ["greedy"]) == 2
    assert "not one of the classes" in capsys.readouterr().err


def test_synthesis_package_is_lazy():
    from synthfuse.shared.testing import modules_imported_by

    assert "torch" not in modules_imported_by("import synthfuse.koda.synthesis")
    import synthfuse.koda.synthesis as synthesis

    assert synthesis.check_program is check_program and "synthesize" in dir(synthesis)
    with pytest.raises(AttributeError, match="no attribute"):
        synthesis.not_a_name
