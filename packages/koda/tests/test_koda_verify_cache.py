"""VerifyCache: verify() answered for programs up to renaming, LRU-bounded; canonical names."""

from __future__ import annotations

import pytest

from synthfuse.koda.analysis.verify import VERIFY_CACHE, VerifyCache, verify
from synthfuse.koda.examples import TEXTBOOK
from synthfuse.koda.lang import load, parse
from synthfuse.koda.lang.canonical import canonical_names
from synthfuse.koda.synthesis.check import check_program

BINARY = TEXTBOOK["binary_search"][0]
# binary_search's program with every identifier renamed and the layout changed.
RENAMED = "def find(m: int) -> int\n{ if m <= 1 { return 0; }\n  return find(m / 2) + 1; }"
BUDGET = 60_000


def _verdict(v):
    return (v.verified, v.static_ok, str(v.static_theta), v.dynamic.consistent, v.dynamic.ns, v.dynamic.ops,
            v.dynamic.delta, v.recurrence)


def test_canonical_names_is_a_renaming_of_the_identifiers():
    form, names = canonical_names(parse("def f(n: int) { if n <= 1 { return; } f(n / 2); work(log2(n)); }"))
    assert names == {"f": "v0", "n": "v1"}
    assert "log2" in form and "f" not in form.split()
    assert canonical_names(parse(RENAMED))[0] == canonical_names(parse(BINARY))[0]


@pytest.mark.parametrize("name, claim", [("binary_search", "log n"), ("merge_sort", "n log n"),
                                         ("merge_sort", "n^2"), ("golden", "n^(1/2)")])
def test_cached_result_equals_uncached(name, claim):
    cache = VerifyCache()
    program = load(TEXTBOOK[name][0])
    first = cache.verify(program, claim, step_budget=BUDGET)
    again = cache.verify(load(TEXTBOOK[name][0]), claim, step_budget=BUDGET)
    assert (cache.misses, cache.hits, len(cache)) == (1, 1, 1)
    assert again is first
    assert first == verify(program, claim, step_budget=BUDGET)


def test_renamed_program_hits_the_cache_with_the_same_verdict():
    cache = VerifyCache()
    original = cache.verify(load(BINARY), "log n", step_budget=BUDGET)
    renamed = cache.verify(load(RENAMED), "Theta(log(n))", step_budget=BUDGET)  # same Θ, other spelling
    assert (cache.misses, cache.hits) == (1, 1)
    assert _verdict(renamed) == _verdict(original) == _verdict(verify(load(RENAMED), "log n", step_budget=BUDGET))
    # The function name is part of the key after renaming: the entry function, named either way, hits.
    cache.verify(load(RENAMED), "log n", function="find", step_budget=BUDGET)
    cache.verify(load(BINARY), "log n", function="search", step_budget=BUDGET)
    assert (cache.misses, cache.hits) == (2, 2)
    # Another claim, another budget or another program are other keys.
    assert cache.verify(load(RENAMED), "n", step_budget=BUDGET).verified is False
    cache.verify(load(RENAMED), "log n", step_budget=BUDGET + 1)
    cache.verify(load(RENAMED.replace("m / 2", "m / 3")), "log n", step_budget=BUDGET)
    assert (cache.misses, cache.hits, len(cache)) == (5, 2, 5)


def test_cache_is_bounded_least_recently_used():
    cache = VerifyCache(maxsize=2)
    a, b, c = (load(f"def f(n: int) {{ if n <= 1 {{ return; }} f(n / {d}); work(1); }}") for d in (2, 3, 4))
    cache.verify(a, "log n", step_budget=BUDGET)
    cache.verify(b, "log n", step_budget=BUDGET)
    cache.verify(a, "log n", step_budget=BUDGET)  # a is now the most recent
    cache.verify(c, "log n", step_budget=BUDGET)  # evicts b
    assert len(cache) == 2 and (cache.misses, cache.hits) == (3, 1)
    cache.verify(a, "log n", step_budget=BUDGET)
    cache.verify(b, "log n", step_budget=BUDGET)
    assert (cache.misses, cache.hits) == (4, 2)
    cache.clear()
    assert (len(cache), cache.misses, cache.hits) == (0, 0, 0)
    with pytest.raises(ValueError, match="maxsize"):
        VerifyCache(maxsize=0)


def test_check_program_uses_the_shared_cache_by_default():
    VERIFY_CACHE.clear()
    first = check_program(BINARY, "log n", step_budget=BUDGET)
    second = check_program(RENAMED, "log n", step_budget=BUDGET)
    uncached = check_program(RENAMED, "log n", step_budget=BUDGET, cache=None)
    assert (VERIFY_CACHE.misses, VERIFY_CACHE.hits) == (1, 1)
    assert first.theta_match and second.theta_match and uncached.theta_match
    assert second.canonical == first.canonical == uncached.canonical
    assert (second.static_theta, second.reason) == (uncached.static_theta, uncached.reason)
    VERIFY_CACHE.clear()
