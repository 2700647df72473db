"""Numeric CSV tables in and out (for the command line), and model files.

A table is a header row of column names followed by rows of numbers. Models are pickled together
with their feature and target names and written atomically; only load model files you trust
(unpickling runs code).
"""

from __future__ import annotations

import csv
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from synthfuse.shared.io import atomic_open, atomic_write_text

__all__ = ["load_model", "read_table", "save_model", "write_table"]

_MODEL_FORMAT = "synthfuse.acr.model/1"


def read_table(path: str | Path, target: str | None = None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Read a numeric CSV; return ``(X, y, feature_names)``.

    ``y`` is the column named ``target`` (None when ``target`` is None); every other column is a
    feature. Raises ``ValueError`` naming the column and line of a non-numeric cell.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header row of column names.")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if target is not None and target not in header:
        raise ValueError(f"{path}: no column named {target!r}; columns are {header}.")
    if not body:
        raise ValueError(f"{path}: no data rows after the header.")
    data = np.empty((len(body), len(header)))
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: {len(row)} cells but the header has {len(header)} columns.")
        for j, cell in enumerate(row):
            try:
                data[line - 2, j] = float(cell)
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}, column {header[j]!r}: {cell!r} is not a number."
                ) from None
    features = [h for h in header if h != target]
    X = data[:, [header.index(f) for f in features]]
    y = data[:, header.index(target)] if target is not None else None
    return X, y, features


def write_table(path: str | Path | None, columns: dict[str, np.ndarray]) -> str:
    """Write ``columns`` as CSV to ``path`` atomically (or return the text when ``path`` is None)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*[np.asarray(c).tolist() for c in columns.values()]))
    if path is not None:
        atomic_write_text(path, buf.getvalue())
    return buf.getvalue()


def save_model(path: str | Path, model: Any, features: list[str], target: str) -> Path:
    """Pickle ``model`` with its column names to ``path`` atomically."""
    payload = {"format": _MODEL_FORMAT, "model": model, "features": list(features), "target": target}
    with atomic_open(path, "wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)


def load_model(path: str | Path) -> dict[str, Any]:
    """Load a file written by :func:`save_model`: ``{"model", "features", "target"}``."""
    with open(path, "rb") as fh:
        payload = pickle.load(fh)  # noqa: S301 - model files are trusted inputs by contract
    if not (isinstance(payload, dict) and payload.get("format") == _MODEL_FORMAT):
        raise ValueError(f"{path} is not a synthfuse acr model file (written by `synthfuse acr fit`).")
    return payload
