"""``synthfuse koda verify | solve | gen-data | distill``, and the demo section."""

from __future__ import annotations

import json

import pytest

from synthfuse.koda.cli import main
from synthfuse.koda.examples import TEXTBOOK
from synthfuse.shared.testing import modules_imported_by


@pytest.fixture
def karatsuba(tmp_path):
    path = tmp_path / "karatsuba.kl"
    path.write_text(TEXTBOOK["karatsuba"][0])
    return path


def test_verify_prints_both_routes(karatsuba, capsys):
    assert main(["verify", str(karatsuba), "--claim", "n^log2(3)"]) == 0
    out = capsys.readouterr().out
    assert "recurrence:   T(n) = 3*T(n/2)" in out
    assert "static route: agrees" in out and "dynamic route: consistent" in out
    assert "VERIFIED (routes agree)" in out
    assert "β0 = 1, β1 = 2" in out and "CFG spectrum: [0.000," in out  # decisions: the if and the loop
    assert "Betti numbers of its clique complex: (1," in out


def test_verify_defaults_to_the_static_answer_and_rejects_wrong_claims(karatsuba, capsys):
    assert main(["verify", str(karatsuba)]) == 0
    assert "claim:        Θ(n^(log(3)/log(2)))" in capsys.readouterr().out
    assert main(["verify", str(karatsuba), "--claim", "n^2"]) == 1
    out = capsys.readouterr().out
    assert "static route: DISAGREES" in out and "NOT VERIFIED" in out


def test_verify_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.kl"
    bad.write_text("def f(n: int) {\n    work(n)\n}\n")
    assert main(["verify", str(bad)]) == 2
    assert "bad.kl:3:1: expected ';' after work(...)" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.kl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["verify", str(bad), "--function", "nope"]) == 2


def test_solve(capsys):
    assert main(["solve", "T(n) = 2*T(n/2) + n"]) == 0
    out = capsys.readouterr().out
    assert "Akra–Bazzi:  T(n) = Θ(n log n)" in out and "Master:      T(n) = Θ(n log n)" in out
    assert main(["solve", "T(n) = T(n/2) + T(n/4) + 1"]) == 0
    out = capsys.readouterr().out
    assert "log((1 + sqrt(5))/2)/log(2)" in out and "Master:      not applicable" in out
    assert main(["solve", "T(n) = T(n-1) + n"]) == 2
    assert "not a division" in capsys.readouterr().err
    assert main(["solve", "T(n) = 2*T(n/2) +"]) == 2


def test_gen_data_and_distill(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["gen-data", "--n", "51", "--out", str(out), "--shard-size", "20"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"] == 51 and len(manifest["shards"]) == 3
    assert "wrote 51 programs in 3 shard(s)" in capsys.readouterr().out
    assert main(["distill", "--data", str(out), "--size", "17", "--out", str(tmp_path / "core")]) == 0
    chosen = json.loads((tmp_path / "core" / "coreset.json").read_text())
    assert len(chosen) == 17 and "TV(class, topology)" in (tmp_path / "core" / "coreset.md").read_text()
    assert main(["gen-data", "--n", "0", "--out", str(out)]) == 2
    assert main(["distill", "--data", str(tmp_path / "nothing"), "--size", "3", "--out", str(tmp_path)]) == 2


def test_import_is_light():
    mods = modules_imported_by("import synthfuse.koda")
    assert "torch" not in mods and "sympy" not in mods


@pytest.mark.slow
def test_demo_section(tmp_path):
    from synthfuse.koda.demo import run
    from synthfuse.shared.demo import DemoContext

    ctx = DemoContext(out_dir=tmp_path)
    headline = run(ctx)
    assert headline["route_agreement"] == 1.0
    assert headline["poincare_map"] >= 0.95 > headline["euclidean_map"]
    assert (tmp_path / "koda_ratios.png").exists() and (tmp_path / "koda_poincare_ast.png").exists()
