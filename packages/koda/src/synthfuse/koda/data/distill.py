r"""Coreset distillation that keeps the joint distribution of Θ class and topology.

Every program gets a *topological signature* (:func:`topological_signature`): the Betti
numbers of the clique complex of its program graph (AST + def-use + call edges), the
cyclomatic number ``β1`` of its control-flow graph, and statistics of its Laplacian
spectrum (Fiedler value, spectral radius, spectral energy, size).

:func:`distill` picks ``size`` programs:

1. *Strata* are the distinct ``(Θ class, β1 above the median?, CFG β1 > 1?, β2 > 0?)``
   tuples. Each gets a quota proportional to its frequency, rounded by the largest-remainder
   method, so the joint distribution of Θ class and topological type is matched as closely
   as integers allow.
2. The points are chosen by *kernel herding* [1]_ on the standardised spectral statistics,
   under those quotas: greedily, the point (of a stratum with seats left) that brings the
   mean RBF embedding of the chosen set closest to that of the whole set. Kernel columns are
   computed on the fly, so memory stays ``O(N)``.

The report compares the coreset with a uniform random subset of the same size: total
variation distance of the joint (class, signature) distribution and the RBF MMD of the
spectral statistics.

References
----------
.. [1] Y. Chen, M. Welling, A. Smola, "Super-samples from kernel herding", UAI 2010.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from synthfuse.koda.analysis.graphs import control_flow_graph, graph_betti, program_graph, spectral_signature
from synthfuse.koda.analysis.topology import betti_numbers, clique_complex
from synthfuse.koda.lang import ast as A

__all__ = ["Coreset", "SPECTRAL_FEATURES", "distill", "signatures_of", "topological_signature"]

#: The continuous part of a signature, in this order.
SPECTRAL_FEATURES = ("nodes", "fiedler", "lambda_max", "energy")


def topological_signature(program: A.Program) -> dict[str, float]:
    """Betti numbers (clique complex of the program graph, CFG) and Laplacian spectrum statistics."""
    graph = program_graph(program)
    betti = betti_numbers(clique_complex(graph.num_nodes, graph.simple().edges, max_dim=2))
    betti = tuple(betti) + (0,) * (3 - len(betti))
    spectrum = spectral_signature(graph)
    _, cfg_beta1 = graph_betti(control_flow_graph(program.entry))
    return {"beta0": betti[0], "beta1": betti[1], "beta2": betti[2], "cfg_beta1": cfg_beta1,
            **{k: spectrum[k] for k in SPECTRAL_FEATURES}}


@dataclass(frozen=True)
class Coreset:
    """The chosen indices and how well they preserve the full set's distribution."""

    indices: tuple[int, ...]
    tv_coreset: float
    tv_random: float
    mmd_coreset: float
    mmd_random: float
    table: tuple[dict, ...]


def _strata(labels: Sequence[str], signatures: Sequence[dict]) -> list[tuple]:
    median_beta1 = float(np.median([sig["beta1"] for sig in signatures]))
    return [(label, sig["beta1"] > median_beta1, sig["cfg_beta1"] > 1, sig["beta2"] > 0)
            for label, sig in zip(labels, signatures)]


def _allocate(counts: dict, size: int, total: int) -> dict:
    """Largest-remainder apportionment of ``size`` seats to strata by their counts."""
    quotas = {key: size * c / total for key, c in counts.items()}
    seats = {key: min(counts[key], math.floor(q)) for key, q in quotas.items()}
    order = sorted(counts, key=lambda key: (-(quotas[key] - math.floor(quotas[key])), -counts[key], key))
    left = size - sum(seats.values())
    while left > 0:
        progressed = False
        for key in order:
            if left and seats[key] < counts[key]:
                seats[key] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return seats


def _rbf(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    sq = (x**2).sum(1)[:, None] + (y**2).sum(1)[None, :] - 2 * x @ y.T  # (len x, len y)
    return np.exp(-np.maximum(sq, 0) / (2 * bandwidth**2))


def _herd(features: np.ndarray, quotas: np.ndarray, strata: np.ndarray, bandwidth: float,
          chunk: int = 2048) -> list[int]:
    """Kernel herding under per-stratum quotas (``strata[i]`` indexes ``quotas``)."""
    n = len(features)
    target = np.zeros(n)
    for lo in range(0, n, chunk):  # target_i = mean_j k(x_i, x_j), without an (n, n) matrix
        target[lo:lo + chunk] = _rbf(features[lo:lo + chunk], features, bandwidth).mean(axis=1)
    running = np.zeros(n)
    seats = quotas.copy()
    available = seats[strata] > 0
    chosen: list[int] = []
    for t in range(int(quotas.sum())):
        score = np.where(available, target - running / (t + 1), -np.inf)
        i = int(np.argmax(score))
        chosen.append(i)
        running += _rbf(features, features[i:i + 1], bandwidth)[:, 0]
        seats[strata[i]] -= 1
        available[i] = False
        if seats[strata[i]] == 0:
            available &= strata != strata[i]
    return chosen


def _mmd(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    value = _rbf(x, x, bandwidth).mean() + _rbf(y, y, bandwidth).mean() - 2 * _rbf(x, y, bandwidth).mean()
    return float(math.sqrt(max(value, 0.0)))


def _tv(full: Counter, subset: Counter) -> float:
    n_full, n_sub = sum(full.values()), sum(subset.values())
    return 0.5 * sum(abs(full[k] / n_full - subset[k] / n_sub) for k in full)


def distill(labels: Sequence[str], signatures: Sequence[dict], size: int, seed: int = 0) -> Coreset:
    """Choose ``size`` of the programs (by their Θ labels and signatures); see the module docstring."""
    if len(labels) != len(signatures):
        raise ValueError(f"{len(labels)} labels but {len(signatures)} signatures")
    if not 0 < size <= len(labels):
        raise ValueError(f"size must be in [1, {len(labels)}], got {size}")
    keys = _strata(labels, signatures)
    names = sorted(set(keys))
    strata = np.array([names.index(k) for k in keys])
    raw = np.array([[sig[k] for k in SPECTRAL_FEATURES] for sig in signatures], dtype=np.float64)
    features = (raw - raw.mean(0)) / np.where(raw.std(0) > 0, raw.std(0), 1.0)
    sample = features[np.random.default_rng(seed).choice(len(features), min(len(features), 500), replace=False)]
    distances = np.sqrt(np.maximum(((sample[:, None] - sample[None]) ** 2).sum(-1), 0))
    bandwidth = float(np.median(distances[distances > 0])) if (distances > 0).any() else 1.0
    seats = _allocate(Counter(keys), size, len(labels))
    chosen = sorted(_herd(features, np.array([seats[k] for k in names]), strata, bandwidth))
    rng = random.Random(seed)
    baseline = sorted(rng.sample(range(len(labels)), size))
    full = Counter(keys)
    table = []
    for label in sorted(set(labels)):
        row = {"theta class": label, "full %": 100 * labels.count(label) / len(labels)}
        row["coreset %"] = 100 * sum(labels[i] == label for i in chosen) / size
        row["random %"] = 100 * sum(labels[i] == label for i in baseline) / size
        members = [i for i, lab in enumerate(labels) if lab == label]
        row["mean β1 full"] = float(np.mean([signatures[i]["beta1"] for i in members]))
        picked = [i for i in chosen if labels[i] == label]
        row["mean β1 coreset"] = float(np.mean([signatures[i]["beta1"] for i in picked])) if picked else math.nan
        table.append(row)
    return Coreset(
        indices=tuple(chosen),
        tv_coreset=_tv(full, Counter(keys[i] for i in chosen)),
        tv_random=_tv(full, Counter(keys[i] for i in baseline)),
        mmd_coreset=_mmd(features, features[chosen], bandwidth),
        mmd_random=_mmd(features, features[baseline], bandwidth),
        table=tuple(table),
    )


def signatures_of(programs: Iterable[A.Program], progress: Callable | None = None) -> list[dict]:
    """:func:`topological_signature` of each program (``progress`` wraps the iterable)."""
    iterator = progress(programs) if progress else programs
    return [topological_signature(p) for p in iterator]
