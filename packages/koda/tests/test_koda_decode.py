"""Decoding: the KV cache against full forward passes, greedy / sampling / contrastive search (deterministic and
seeded), Gumbel-top-k, constraints."""

import pytest
import torch

from synthfuse.koda.data import THETA_CLASSES, generate
from synthfuse.koda.decode import ProgramConstraint, contrastive_search, filter_logits, greedy, gumbel_top_k, sample
from synthfuse.koda.decode.search import _reference_decode
from synthfuse.koda.model import KLTokenizer, KodaModelConfig, KodaTransformer, KVCache
from synthfuse.shared.sampling import _reference_filter_logits


@pytest.fixture(scope="module")
def tokenizer():
    return KLTokenizer.fit((r.source for r in generate(40, seed=0)), list(THETA_CLASSES))


def _model(vocab_size, seed=0, **kw):
    # capacity_factor = n_experts: forward() never drops a token, so it is the cache's oracle.
    base = dict(vocab_size=vocab_size, d_model=16, n_layers=3, n_heads=2, d_ff=32, n_experts=2, moe_every=2,
                ball_dim=4, ball_layer=1, max_len=64, capacity_factor=2.0)
    base.update(kw)
    torch.manual_seed(seed)
    return KodaTransformer(KodaModelConfig(**base)).eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return _model(len(tokenizer))


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [tokenizer.prompt("n log n"), tokenizer.prompt("n", "def solve(n: int)"), tokenizer.prompt("log n"),
            tokenizer.prompt("n^2", "def sort(n: int) -> int")]


@pytest.mark.parametrize("ball_layer", [0, 1, 3], ids=lambda b: f"ball_layer{b}")
def test_cache_matches_full_forward_token_by_token(ball_layer):
    model = _model(30, ball_layer=ball_layer)
    tokens = torch.randint(0, 30, (3, 11))
    with torch.no_grad():
        full = model(tokens)
        one_shot, _ = model.extend(tokens)
        cache = KVCache.allocate(model, 3, 11)
        steps = []
        for t in range(11):
            out, entries = model.extend(tokens[:, t:t + 1], cache)
            cache.append(entries)
            steps.append(out)
    torch.testing.assert_close(one_shot.logits, full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([o.logits for o in steps], 1), full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([o.hidden for o in steps], 1), full.hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steps[-1].ball_dist[:, 0], full.ball_dist[:, -1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cache full"):
        cache.append(entries)


def test_siblings_equal_separate_continuations_and_padding_is_invisible():
    model = _model(30)
    prefix, cands = torch.randint(0, 30, (2, 7)), torch.randint(0, 30, (2, 3))
    with torch.no_grad():
        cache = KVCache.allocate(model, 2, 8)
        cache.append(model.extend(prefix, cache)[1])
        together, entries = model.extend(cands, cache, siblings=True)
        for j in range(3):
            alone = model(torch.cat([prefix, cands[:, j:j + 1]], dim=1))
            torch.testing.assert_close(together.logits[:, j], alone.logits[:, -1], atol=1e-5, rtol=1e-5)
        chosen = torch.tensor([2, 0])
        cache.append(entries.take(chosen))
        nxt = torch.randint(0, 30, (2, 1))
        after = model.extend(nxt, cache)[0].logits[:, 0]
        for row in range(2):
            seq = torch.cat([prefix[row], cands[row, chosen[row]].view(1), nxt[row]])[None]
            torch.testing.assert_close(after[row], model(seq).logits[0, -1], atol=1e-5, rtol=1e-5)
        # Left padding: a 3-token row padded to 7 gives the logits of the 3 tokens alone.
        padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), prefix[:1, :3]], dim=1)
        valid = torch.tensor([[False] * 4 + [True] * 3])
        out = model.extend(padded, valid=valid)[0]
    torch.testing.assert_close(out.logits[0, 4:], model(prefix[:1, :3]).logits[0], atol=1e-5, rtol=1e-5)


def test_filter_logits_matches_reference():
    torch.manual_seed(1)
    logits = torch.randn(6, 12)
    logits[0, :5] = float("-inf")  # already excluded by a constraint
    for temperature, top_k, top_p in [(1.0, 0, 1.0), (0.7, 3, 1.0), (1.3, 0, 0.6), (1.0, 5, 0.8), (2.0, 1, 0.3)]:
        fast = filter_logits(logits, temperature, top_k, top_p)
        torch.testing.assert_close(fast, _reference_filter_logits(logits, temperature, top_k, top_p))
    kept = torch.isfinite(filter_logits(logits, 1.0, 0, 0.5))
    probs = torch.softmax(logits, -1)
    # The nucleus is the smallest prefix of the ranking whose mass reaches p.
    for row in range(6):
        mass = probs[row][kept[row]].sum()
        assert mass >= 0.5 and mass - probs[row][kept[row]].min() < 0.5
    for bad, match in [((0.0, 0, 1.0), "temperature"), ((1.0, -1, 1.0), "top_k"), ((1.0, 0, 0.0), "top_p"),
                       ((float("nan"), 0, 1.0), "temperature")]:
        with pytest.raises(ValueError, match=match):
            filter_logits(logits, *bad)
    # KODA's "off" (top_k = 0, top_p = 1) is the shared None
    torch.testing.assert_close(filter_logits(logits, 0.7, 0, 1.0), filter_logits(logits, 0.7, None, None))
    torch.testing.assert_close(filter_logits(logits, 0.7, 0, 0.6), filter_logits(logits, 0.7, None, 0.6))


def test_constraint_masks_vectorized_match_stepping(tokenizer):
    c = ProgramConstraint(tokenizer)
    first = tokenizer.encode_program("def f(n: int) { if n <= 1 { return; } f(n / 2); }")
    second = tokenizer.encode_program("def g(m: int) { work(m); } def h(n: int) { g(n); }")[:len(first)]
    ids = torch.tensor([first, second])
    fast = c.allowed_along(ids)
    torch.testing.assert_close(fast, c._reference_allowed_along(ids))
    close, eos = tokenizer.index["}"], tokenizer.eos_id
    assert not fast[0, 0, close] and not fast[0, 0, eos]  # nothing open yet: no '}' and no end
    assert fast[0, -1, eos] and not fast[0, -1, close]  # after the final '}'
    assert not fast[:, :, tokenizer.bos_id].any() and not fast[:, :, tokenizer.index["<theta:n>"]].any()


@pytest.mark.parametrize("alpha,top_k", [(0.0, 1), (0.6, 3)], ids=["greedy", "contrastive"])
def test_cached_decoding_matches_full_recompute(tokenizer, model, prompts, alpha, top_k):
    fast = (greedy(model, tokenizer, prompts, max_new_tokens=20) if top_k == 1 else
            contrastive_search(model, tokenizer, prompts, alpha=alpha, top_k=top_k, max_new_tokens=20))
    for prompt, ids in zip(prompts, fast.ids):
        assert ids == _reference_decode(model, tokenizer, prompt, 20, alpha=alpha, top_k=top_k)


def test_contrastive_reduces_to_greedy_and_decoding_is_deterministic(tokenizer, prompts):
    model = _model(len(tokenizer), seed=3, max_len=96)
    base = greedy(model, tokenizer, prompts, max_new_tokens=50)
    assert contrastive_search(model, tokenizer, prompts, alpha=0.0, top_k=5, max_new_tokens=50).ids == base.ids
    assert contrastive_search(model, tokenizer, prompts, alpha=0.7, top_k=1, max_new_tokens=50).ids == base.ids
    penalised = contrastive_search(model, tokenizer, prompts, alpha=0.7, top_k=5, max_new_tokens=50)
    assert penalised.ids != base.ids
    # Batching (left padding, cache compaction) does not change a prompt's program.
    assert greedy(model, tokenizer, prompts, max_new_tokens=50, batch_size=1).ids == base.ids
    a = sample(model, tokenizer, prompts, seed=7, top_k=8, top_p=0.9, max_new_tokens=50)
    assert sample(model, tokenizer, prompts, seed=7, top_k=8, top_p=0.9, max_new_tokens=50).ids == a.ids
    assert sample(model, tokenizer, prompts, seed=8, top_k=8, top_p=0.9, max_new_tokens=50).ids != a.ids
    off = sample(model, tokenizer, prompts, seed=7, max_new_tokens=50)  # top_k = 0, top_p = 1: no filter
    assert sample(model, tokenizer, prompts, seed=7, top_k=None, top_p=None, max_new_tokens=50).ids == off.ids


def _chi_square(counts, expected):
    return float(((counts - expected) ** 2 / expected).sum())


def test_gumbel_top_k_samples_without_replacement():
    logits, temperature, n = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0]), 0.7, 40_000
    p = torch.softmax(logits / temperature, -1).double()
    gen = torch.Generator().manual_seed(0)
    draws = gumbel_top_k(logits.expand(n, 5), 2, temperature, gen)  # (n, 2)
    # First draw ~ softmax(ℓ/τ): chi-square with 4 degrees of freedom, below its 0.9999 quantile 23.51.
    first = torch.bincount(draws[:, 0], minlength=5).double()
    assert _chi_square(first, n * p) < 23.51
    # Second draw without replacement: P(i, j) = p_i p_j / (1 - p_i), 20 pairs (19 dof; 0.9999 quantile 50.80).
    pair = torch.bincount(draws[:, 0] * 5 + draws[:, 1], minlength=25).double().view(5, 5)
    expected = p[:, None] * p[None, :] / (1 - p[:, None])
    off = ~torch.eye(5, dtype=torch.bool)
    assert pair.diagonal().sum() == 0 and _chi_square(pair[off], n * expected[off]) < 50.80
    # k = V is a permutation; -inf tokens come last; the same generator state gives the same draws.
    perm = gumbel_top_k(torch.randn(7, 9), 9, 1.3, torch.Generator().manual_seed(1))
    assert (perm.sort(-1).values == torch.arange(9)).all()
    masked = torch.tensor([[0.0, float("-inf"), 5.0, float("-inf")]]).expand(200, 4)
    assert set(gumbel_top_k(masked, 2, 1.0, gen)[:, :2].flatten().tolist()) == {0, 2}
    again = [gumbel_top_k(torch.randn(3, 9, generator=torch.Generator().manual_seed(4)), 3, 0.5,
                          torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*again)
    for bad, match in [(dict(k=0), "k must"), (dict(k=10), "k must"), (dict(temperature=0.0), "temperature"),
                       (dict(temperature=float("nan")), "temperature")]:
        with pytest.raises(ValueError, match=match):
            gumbel_top_k(torch.randn(2, 9), **{"k": 2, **bad})


@pytest.mark.parametrize("seed,top_p", [(0, 1.0), (1, 0.9)], ids=["all-tokens", "nucleus"])
def test_seeded_contrastive_matches_full_recompute(tokenizer, model, prompts, seed, top_p):
    for prompt in prompts[:2]:
        fast = contrastive_search(model, tokenizer, [prompt], alpha=0.5, top_k=3, temperature=1.2, top_p=top_p,
                                  seed=seed, max_new_tokens=16, batch_size=1)
        ref = _reference_decode(model, tokenizer, prompt, 16, alpha=0.5, top_k=3, temperature=1.2, top_p=top_p,
                                generator=torch.Generator().manual_seed(seed))
        assert fast.ids[0] == ref


def test_seeded_contrastive_is_reproducible_and_diverse(tokenizer, prompts):
    model = _model(len(tokenizer), seed=3, max_len=96)
    deterministic = contrastive_search(model, tokenizer, prompts, alpha=0.4, top_k=4, max_new_tokens=40)
    # Temperature 0 is the deterministic search whatever the seed.
    assert contrastive_search(model, tokenizer, prompts, alpha=0.4, top_k=4, temperature=0.0, seed=9,
                              max_new_tokens=40).ids == deterministic.ids
    run = dict(alpha=0.4, top_k=3, temperature=1.5, max_new_tokens=40)
    a = contrastive_search(model, tokenizer, prompts, seed=7, **run)
    assert contrastive_search(model, tokenizer, prompts, seed=7, **run).ids == a.ids
    assert contrastive_search(model, tokenizer, prompts, seed=8, **run).ids != a.ids
    # One prompt, many programs (a deterministic decoder writes one).
    repeated = contrastive_search(model, tokenizer, [prompts[0]] * 6, seed=7, **run)
    assert len({tuple(ids) for ids in repeated.ids}) >= 4


def test_stopping_at_end_of_program(tokenizer, prompts):
    model = _model(len(tokenizer), seed=5, max_len=128)
    close, open_, eos = tokenizer.index["}"], tokenizer.index["{"], tokenizer.eos_id
    with torch.no_grad():  # constant final state e_0: the logits are column 0 of the head
        model.norm.weight.zero_()
        model.norm.bias.zero_()
        model.norm.bias[0] = 1.0
        model.head.weight.zero_()
        model.head.weight[eos, 0], model.head.weight[open_, 0], model.head.weight[close, 0] = 30.0, 3.0, 3.0
    free = greedy(model, tokenizer, prompts, max_new_tokens=40, constrained=False)
    assert free.ids == [[]] * len(prompts) and all(free.finished)  # <eos> at once
    out = sample(model, tokenizer, prompts, seed=0, max_new_tokens=100)
    specials = {tokenizer.index[s] for s in ("<pad>", "<bos>", "<sep>", "<sig>", "<unk>", "<eos>")}
    assert any(out.finished)
    for ids, done in zip(out.ids, out.finished):
        assert not specials & set(ids)
        depth = 0
        for i, t in enumerate(ids):
            depth += (t == open_) - (t == close)
            assert depth >= 0
            if done and i < len(ids) - 1:
                assert not (depth == 0 and t == close), "the program could have ended earlier"
        if done:  # ended right after the outermost '}' closed
            assert ids[-1] == close and depth == 0
        else:
            assert len(ids) == 100


def test_bad_arguments_fail_clearly(tokenizer, model, prompts):
    with pytest.raises(ValueError, match="alpha"):
        contrastive_search(model, tokenizer, prompts, alpha=1.5)
    with pytest.raises(ValueError, match="top_k"):
        contrastive_search(model, tokenizer, prompts, top_k=0)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, tokenizer, prompts, temperature=0)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
            contrastive_search(model, tokenizer, prompts, temperature=bad)
    with pytest.raises(ValueError, match="needs temperature > 0"):
        contrastive_search(model, tokenizer, prompts, top_p=0.9)
    with pytest.raises(ValueError, match="top_p"):
        contrastive_search(model, tokenizer, prompts, temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="no prompts"):
        greedy(model, tokenizer, [])
    with pytest.raises(ValueError, match="outside"):
        greedy(model, tokenizer, [[10_000]])
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy(model, tokenizer, prompts, max_new_tokens=0)
    with pytest.raises(ValueError, match="max_len"):
        greedy(model, tokenizer, [[tokenizer.bos_id] * 64])
    with pytest.raises(ValueError, match="vocab_size"):
        greedy(_model(30), tokenizer, prompts)
    with pytest.raises(TypeError, match="KodaTransformer"):
        greedy(torch.nn.Linear(2, 2), tokenizer, prompts)
