"""The demo runner behind ``hatch run demo`` and ``synthfuse demo``.

Each package registers a section in the entry-point group ``synthfuse.demos``::

    [project.entry-points."synthfuse.demos"]
    acr = "synthfuse.acr.demo:run"

``run(ctx: DemoContext)`` writes its tables and PNG plots under ``ctx.out_dir`` and
returns a short dict of headline figures (or ``None``). The runner calls every section,
shows progress, and writes ``demo-output/SUMMARY.md``. It knows nothing about the
packages beyond their names, so a package adds its demo without touching this file.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

from synthfuse.shared.cli import COMMAND_GROUP, KNOWN_PACKAGES
from synthfuse.shared.io import atomic_write_text

DEMO_GROUP = "synthfuse.demos"
T = TypeVar("T")

__all__ = ["DemoContext", "format_table", "main", "run_demos"]


def format_table(rows: Sequence[Mapping[str, Any]], floatfmt: str = ".4g") -> str:
    """Render ``rows`` (dicts sharing keys) as a GitHub-flavoured Markdown table."""
    if not rows:
        return "(no rows)\n"
    cols = list(rows[0].keys())
    for r in rows[1:]:
        cols += [k for k in r if k not in cols]

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    out = [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells]
    return "\n".join(out) + "\n"


@dataclass
class DemoContext:
    """What a demo section receives: where to write, how long to run, and helpers."""

    out_dir: Path
    full: bool = False
    seed: int = 0
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def progress(self, iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
        """Wrap ``iterable`` in a progress bar on stderr."""
        from tqdm.auto import tqdm

        return iter(tqdm(iterable, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True))

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], title: str | None = None) -> str:
        """Print ``rows`` and save them as ``<name>.md`` and ``<name>.csv`` (atomically)."""
        md = format_table(rows)
        heading = f"### {title or name}\n\n"
        print("\n" + heading + md, flush=True)
        atomic_write_text(self.out_dir / f"{name}.md", heading + md)
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_text(self.out_dir / f"{name}.csv", buf.getvalue())
        self.tables.append(heading + md)
        return md

    def savefig(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``<name>.png`` atomically and close it."""
        from synthfuse.shared.io import atomic_open

        path = self.out_dir / f"{name}.png"
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
        fig.clf()
        self.figures.append(path.name)
        print(f"  wrote {path}", flush=True)
        return path


def _sections() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=DEMO_GROUP)}


def run_demos(
    out: Path, *, full: bool = False, only: Sequence[str] | None = None, seed: int = 0
) -> tuple[list[dict[str, Any]], bool]:
    """Run the registered demo sections; return (status rows, all succeeded)."""
    sections = _sections()
    installed = {ep.name for ep in entry_points(group=COMMAND_GROUP)}
    names = list(dict.fromkeys([*KNOWN_PACKAGES, *sorted(sections)]))
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"synthfuse demo: unknown section(s) {unknown}; choose from {names}")
        names = [n for n in names if n in only]
    rows: list[dict[str, Any]] = []
    ok = True
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names, 1):
        wheel = KNOWN_PACKAGES.get(name, (name, ""))[0]
        if name not in sections:
            status = "no demo yet" if name in installed else f"not installed (pip install {wheel})"
            print(f"[{i}/{len(names)}] {name}: {status}", flush=True)
            rows.append({"section": name, "status": status, "seconds": None, "outputs": ""})
            continue
        print(f"[{i}/{len(names)}] {name}: running{' (--full)' if full else ''} ...", flush=True)
        ctx = DemoContext(out_dir=out / name, full=full, seed=seed)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            headline = sections[name].load()(ctx) or {}
            status = "ok"
        except Exception:  # a failing section is reported, the others still run
            traceback.print_exc()
            headline, status, ok = {}, "FAILED (traceback above)", False
        seconds = time.perf_counter() - t0
        outputs = ", ".join(sorted(p.name for p in ctx.out_dir.iterdir() if not p.name.startswith(".")))
        extra = "; ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in headline.items())
        rows.append({"section": name, "status": status, "seconds": round(seconds, 1),
                     "headline": extra, "outputs": outputs})
        print(f"[{i}/{len(names)}] {name}: {status} in {seconds:.1f} s", flush=True)
    summary = "# synthfuse demo\n\n" + format_table(rows)
    atomic_write_text(out / "SUMMARY.md", summary)
    print("\n" + summary + f"\nOutputs in {out.resolve()}", flush=True)
    return rows, ok


def main(argv: Sequence[str] | None = None) -> int:
    """``synthfuse demo [--full] [--out DIR] [--only NAME ...]``."""
    parser = argparse.ArgumentParser(prog="synthfuse demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="run the long versions (minutes to hours)")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these sections")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _, ok = run_demos(args.out, full=args.full, only=args.only, seed=args.seed)
    return 0 if ok else 1
