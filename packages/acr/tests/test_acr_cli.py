"""`synthfuse acr fit / predict / plot` end to end on a small CSV."""

import numpy as np
import pytest

from synthfuse.acr.cli import main
from synthfuse.acr.datasets import make_heteroscedastic_sine


@pytest.fixture()
def csv_file(tmp_path):
    X, y, _, _ = make_heteroscedastic_sine(300, n_features=3, random_state=0)
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([y, X]), delimiter=",", header="y,a,b,c", comments="")
    return path, X, y


def test_acr_cli_fit_predict_plot(csv_file, tmp_path, capsys):
    path, X, y = csv_file
    model = tmp_path / "model.pkl"
    assert main(["fit", str(path), "--target", "y", "--out", str(model), "--n-experts", "4",
                 "--random-state", "0"]) == 0
    assert model.exists() and "experts" in capsys.readouterr().out

    preds = tmp_path / "preds.csv"
    assert main(["predict", str(model), str(path), "--alpha", "0.2", "--out", str(preds)]) == 0
    table = np.genfromtxt(preds, delimiter=",", names=True)
    assert table.dtype.names == ("y_pred", "lower", "upper")
    assert len(table) == 300 and np.all(table["lower"] <= table["y_pred"])
    assert np.all(table["y_pred"] <= table["upper"])
    assert np.corrcoef(table["y_pred"], y)[0, 1] > 0.8

    png = tmp_path / "slice.png"
    assert main(["plot", str(model), "--out", str(png), "--dims", "0", "2", "--data", str(path)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # predictions to standard output; feature columns may come in any order
    reordered = tmp_path / "reordered.csv"
    np.savetxt(reordered, np.column_stack([X[:5, 2], X[:5, 0], X[:5, 1]]), delimiter=",",
               header="c,a,b", comments="")
    capsys.readouterr()
    assert main(["predict", str(model), str(reordered)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    np.testing.assert_allclose(np.array(out[1:], dtype=float), table["y_pred"][:5], rtol=1e-12)


def test_acr_cli_fit_reports_missing_target_and_bad_cells(csv_file, tmp_path, capsys):
    path, _, _ = csv_file
    assert main(["fit", str(path), "--target", "z", "--out", str(tmp_path / "m.pkl")]) == 2
    assert "no column named 'z'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("y,a\n1,2\n3,oops\n")
    assert main(["fit", str(bad), "--target", "y", "--out", str(tmp_path / "m.pkl")]) == 2
    assert "line 3, column 'a': 'oops' is not a number" in capsys.readouterr().err
    assert main(["fit", str(path), "--target", "y", "--out", str(tmp_path / "m.pkl"), "--degree", "-1"]) == 2
    assert "'degree' parameter" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "absent.csv"), "--target", "y", "--out", str(tmp_path / "m.pkl")]) == 2
    assert "absent.csv" in capsys.readouterr().err
    assert not (tmp_path / "m.pkl").exists()


def test_acr_cli_predict_rejects_foreign_files_and_missing_columns(csv_file, tmp_path, capsys):
    import pickle

    junk = tmp_path / "junk.pkl"
    junk.write_bytes(pickle.dumps({"hello": 1}))
    assert main(["predict", str(junk), str(junk)]) == 2
    assert "not a synthfuse acr model" in capsys.readouterr().err
    path, _, _ = csv_file
    model = tmp_path / "model.pkl"
    assert main(["fit", str(path), "--target", "y", "--out", str(model), "--n-experts", "2"]) == 0
    partial = tmp_path / "partial.csv"
    partial.write_text("a,b\n1,2\n")
    assert main(["predict", str(model), str(partial)]) == 2
    assert "lacks the model's feature columns ['c']" in capsys.readouterr().err
