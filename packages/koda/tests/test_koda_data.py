"""The labelled-program generator, JSONL shards and coreset distillation."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from synthfuse.koda.data import (FAMILIES, THETA_CLASSES, distill, generate, generate_one, read_shards,
                                 signatures_of, topological_signature, write_shards)
from synthfuse.koda.data.distill import _allocate, _strata
from synthfuse.koda.lang import load


def test_generator_is_deterministic_and_balanced():
    first = [r.to_json() for r in generate(68, seed=4)]
    assert first == [r.to_json() for r in generate(68, seed=4)]
    assert first != [r.to_json() for r in generate(68, seed=5)]
    # any slice regenerates on its own
    assert [r.to_json() for r in generate(10, seed=4, start=30)] == first[30:40]
    assert generate_one(4, 33).to_json() == first[33]
    counts = Counter(json.loads(line)["theta_class"] for line in first)
    assert len(THETA_CLASSES) >= 12 and set(counts) == set(THETA_CLASSES)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_every_family_yields_valid_programs():
    for i, family in enumerate(FAMILIES):
        for j in range(3):
            record = generate_one(0, 1000 * i + j, family=family)
            program = load(record.source)
            assert record.function == program.entry.name and record.family == family.name
            assert record.recurrence == family.recurrence and record.theta == family.theta


def test_shards_are_written_atomically_and_read_back(tmp_path):
    records = list(generate(25, seed=1))
    paths = write_shards(records, tmp_path / "out", shard_size=10)
    assert [p.name for p in paths] == ["shard-00000.jsonl", "shard-00001.jsonl", "shard-00002.jsonl"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["records"] == 25 and sum(manifest["theta_classes"].values()) == 25
    assert list(read_shards(tmp_path / "out")) == records
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError):
        write_shards(records, tmp_path / "bad", shard_size=0)


def _reference_allocation(counts: dict, size: int, total: int) -> dict:
    """Hamilton's method spelled out: floors, then one extra seat for the largest remainders."""
    quotas = {k: size * c / total for k, c in counts.items()}
    seats = {k: math.floor(q) for k, q in quotas.items()}
    by_remainder = sorted(counts, key=lambda k: (-(quotas[k] - seats[k]), -counts[k], k))
    for k in by_remainder[: size - sum(seats.values())]:
        seats[k] += 1
    return seats


@pytest.mark.parametrize("counts, size", [({"a": 5, "b": 3, "c": 2}, 4), ({"a": 7, "b": 7, "c": 1}, 9),
                                          ({i: i + 1 for i in range(12)}, 20)])
def test_largest_remainder_allocation(counts, size):
    total = sum(counts.values())
    seats = _allocate(counts, size, total)
    assert sum(seats.values()) == size
    assert seats == _reference_allocation(counts, size, total)


def test_signatures_are_topological():
    record = generate_one(0, 7)
    sig = topological_signature(load(record.source))
    assert sig["beta0"] == 1 and sig["beta1"] >= 1 and sig["cfg_beta1"] >= 1
    assert sig["fiedler"] > 0 and sig["lambda_max"] >= sig["fiedler"]


def test_distillation_preserves_the_joint_distribution_better_than_random():
    records = list(generate(340, seed=3))
    labels = [r.theta_class for r in records]
    signatures = signatures_of(load(r.source) for r in records)
    coreset = distill(labels, signatures, 68, seed=0)
    assert len(coreset.indices) == len(set(coreset.indices)) == 68
    keys = _strata(labels, signatures)
    full, chosen = Counter(keys), Counter(keys[i] for i in coreset.indices)
    for key, count in full.items():  # every (class, topology) stratum within one seat of its quota
        assert abs(chosen[key] - 68 * count / 340) < 1
    per_class = Counter(labels[i] for i in coreset.indices)
    assert all(abs(c - 4) <= 1 for c in per_class.values())  # 17 balanced classes: about 4 each
    assert coreset.tv_coreset < coreset.tv_random
    assert coreset.mmd_coreset < coreset.mmd_random
    assert {row["theta class"] for row in coreset.table} == set(THETA_CLASSES)
    with pytest.raises(ValueError):
        distill(labels, signatures, 0)
    with pytest.raises(ValueError):
        distill(labels[:3], signatures, 2)
