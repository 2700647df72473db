"""Generator of labelled KL programs over the Θ classes of :mod:`.families`.

Program ``i`` of seed ``s`` is drawn from ``random.Random(f"{s}/{i}")`` alone, so the corpus
is deterministic, any slice can be regenerated on its own, and shards can be produced in
any order. A program is a recursive function (base case, cost kernel, recursive calls in
one of several shapes, sometimes a helper function or a data-dependent branch of equal
cost) labelled with its family's recurrence and Θ class. Kernels realise ``g`` with
``work``, ``while`` loops on a doubling/halving variable, or ``for`` loops; all of them are
within reach of both the static analysis and the interpreter.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from synthfuse.koda.data.families import FAMILIES, THETA_CLASSES, Family
from synthfuse.koda.lang.parser import parse
from synthfuse.koda.lang.pretty import pretty
from synthfuse.shared.io import atomic_open, atomic_write_text

__all__ = ["LabelledProgram", "generate", "generate_one", "read_shards", "write_shards"]

_FUNCTION_NAMES = ("solve", "sort", "search", "walk", "split", "build", "reduce", "scan", "mult", "select",
                   "combine", "partition", "visit", "query", "fold", "descend")
_HELPER_NAMES = ("merge", "combine_parts", "scan_level", "mix", "sweep", "accumulate")
_PARAMS = ("n", "m", "size", "len")

#: Kernel name -> KL snippets; {n} is the size, {c} a small constant, {v} a fresh variable.
_KERNELS: dict[str, tuple[str, ...]] = {
    "1": ("work({c});", "let {v} = {c}; work({v});", ""),
    "log n": ("work(log2({n}));",
              "let {v} = {n}; while {v} > 1 {{ work(1); {v} = {v} / 2; }}",
              "let {v} = 1; while {v} < {n} {{ {v} = {v} * 2; work({c}); }}"),
    "sqrt n": ("work(sqrt({n}));", "let {v} = sqrt({n}); work({v} + {c});"),
    "n": ("work({n});", "work({c} * {n} + {c});",
          "let {v} = 1; while {v} < {n} {{ work({v}); {v} = {v} * 2; }}",
          "for {v} in range(0, {n}) {{ work(1); }}"),
    "n log n": ("work({n} * log2({n}));",
                "let {v} = 1; while {v} < {n} {{ work({n}); {v} = {v} * 2; }}",
                "let {v} = {n}; while {v} > 1 {{ work({n} + {c}); {v} = {v} / 2; }}"),
    "n/log n": ("work({n} / log2({n}));", "let {v} = log2({n}); work({n} / {v});"),
    "n^2": ("work({n} * {n});", "for {v} in range(0, {n}) {{ work({n}); }}",
            "let {v} = 1; while {v} < {n} {{ work({n} * {v}); {v} = {v} * 2; }}"),
}


@dataclass(frozen=True)
class LabelledProgram:
    """One corpus record: KL source with its family, recurrence and Θ labels."""

    id: str
    seed: int
    index: int
    source: str
    function: str
    family: str
    recurrence: str
    theta: str
    theta_class: str

    def to_json(self) -> str:
        """One JSONL line."""
        return json.dumps(asdict(self), sort_keys=True)


def _class_of(family: Family) -> str:
    for label, fams in THETA_CLASSES.items():
        if family in fams:
            return label
    raise KeyError(family.name)  # pragma: no cover - every family is in a class


def _indent(lines: Iterable[str], depth: int = 1) -> list[str]:
    return ["    " * depth + line for line in lines if line]


def _argument(rng: random.Random, n: str, num: int, den: int) -> str:
    if num == 1:
        return rng.choice((f"{n} / 2", f"({n} + 1) / 2")) if den == 2 else f"{n} / {den}"
    return rng.choice((f"{num} * {n} / {den}", f"{n} * {num} / {den}"))


def generate_one(seed: int, index: int, family: Family | None = None) -> LabelledProgram:
    """Program ``index`` of the corpus with ``seed`` (its family drawn round-robin over classes)."""
    rng = random.Random(f"{seed}/{index}")
    if family is None:
        classes = list(THETA_CLASSES)
        family = rng.choice(THETA_CLASSES[classes[index % len(classes)]])
    name, n = rng.choice(_FUNCTION_NAMES), rng.choice(_PARAMS)
    returns_int = rng.random() < 0.35
    names = iter(f"j{i}" for i in range(100))

    # Linear for-loops cost n interpreter steps per distinct call: keep them to one-term
    # recurrences (one distinct argument per level), so the dynamic route reaches large n.
    kernels = [k for k in _KERNELS[family.g] if len(family.terms) == 1 or not k.startswith("for")]

    def kernel() -> list[str]:
        snippet = rng.choice(kernels)
        return [snippet.format(n=n, c=rng.randint(1, 5), v=next(names))] if snippet else []

    base = rng.randint(1, 3)
    cond = rng.choice((f"{n} <= {base}", f"{n} < {base + 1}"))
    base_body = [f"work({rng.randint(0, 4)});", "return 1;" if returns_int else "return;"]
    pre, post, helper = [], [], None
    if rng.random() < 0.25:
        helper_name = rng.choice(_HELPER_NAMES)
        helper_param = rng.choice([p for p in _PARAMS if p != n])
        saved_n, n = n, helper_param
        helper_body = kernel()
        n = saved_n
        helper = [f"def {helper_name}({helper_param}: int) {{", *_indent(helper_body), "}"]
        (pre if rng.random() < 0.5 else post).append(f"{helper_name}({n});")
    else:
        (pre if rng.random() < 0.5 else post).extend(kernel())
    if rng.random() < 0.2:
        pre.append(rng.choice((f"if {n} % 2 == 0 {{ work(1); }} else {{ work(2); }}",
                               f"let {next(names)} = {n} * 2 + 1;")))
    calls: list[str] = []
    call_args = []
    for a, num, den in family.terms:
        arg = _argument(rng, n, num, den)
        if rng.random() < 0.3:
            var = next(names)
            calls.append(f"let {var} = {arg};")
            arg = var
        call_args.append((a, arg))
    result = []
    if returns_int:
        calls.append("let acc = 0;")
    for a, arg in call_args:
        stmt = f"acc = acc + {name}({arg});" if returns_int else f"{name}({arg});"
        if a >= 3 and rng.random() < 0.7:
            calls.append(f"for {next(names)} in range(0, {a}) {{ {stmt} }}")
        else:
            calls.extend([stmt] * a)
    if returns_int:
        result.append("return acc + 1;")
    body = [f"if {cond} {{", *_indent(base_body), "}", *pre, *calls, *post, *result]
    lines = [f"def {name}({n}: int){' -> int' if returns_int else ''} {{", *_indent(body), "}"]
    if helper:
        lines += [""] + helper
    source = pretty(parse("\n".join(lines)))
    return LabelledProgram(
        id=f"{seed}-{index}", seed=seed, index=index, source=source, function=name,
        family=family.name, recurrence=family.recurrence, theta=family.theta, theta_class=_class_of(family))


def generate(count: int, seed: int = 0, start: int = 0) -> Iterator[LabelledProgram]:
    """Programs ``start .. start + count - 1`` of the corpus with ``seed``."""
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    for i in range(start, start + count):
        yield generate_one(seed, i)


def write_shards(records: Iterable[LabelledProgram], out_dir: str | Path, shard_size: int = 5000,
                 progress=None) -> list[Path]:
    """Write ``records`` as ``shard-00000.jsonl, ...`` (each atomically) plus ``manifest.json``.

    ``progress`` wraps the record iterator (e.g. a tqdm bar). Returns the shard paths.
    """
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    counts: dict[str, int] = {}
    buffer: list[str] = []

    def flush() -> None:
        path = out / f"shard-{len(paths):05d}.jsonl"
        with atomic_open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(buffer) + "\n")
        paths.append(path)
        buffer.clear()

    iterator = progress(records) if progress else records
    for record in iterator:
        buffer.append(record.to_json())
        counts[record.theta_class] = counts.get(record.theta_class, 0) + 1
        if len(buffer) == shard_size:
            flush()
    if buffer:
        flush()
    manifest = {"records": sum(counts.values()), "shards": [p.name for p in paths],
                "theta_classes": dict(sorted(counts.items())), "families": len(FAMILIES)}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return paths


def read_shards(out_dir: str | Path) -> Iterator[LabelledProgram]:
    """Read back the records written by :func:`write_shards`, in order."""
    out = Path(out_dir)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for name in manifest["shards"]:
        with open(out / name, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield LabelledProgram(**json.loads(line))
