"""The ending every benchmark in benchmarks/ shares: print the report, save it and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from synthfuse.shared.io import atomic_write_text


def write_report(out: Path, name: str, text: str,
                 plot: Callable[[Any, Path], None] | None = None, rows: Any = None) -> None:
    """Print ``text``; write ``out/<name>.md`` atomically and, with ``plot``, ``out/<name>.png``."""
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.md", text)
    if plot is not None:
        plot(rows, out / f"{name}.png")
    print(f"wrote {out / name}.md" + (" and .png" if plot is not None else ""), flush=True)
