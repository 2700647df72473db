"""The whole model: exact streaming, causality, generation from the state, early exit, I/O."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from synthfuse.synthe import Synthe, load_state, save_state, state_nbytes


@pytest.fixture
def model64(small_config, calibrate):
    """A float64 model in eval mode with router and probes calibrated to act on ~half the tokens."""
    torch.manual_seed(0)
    model = Synthe(small_config()).double().eval()
    ids = torch.randint(0, 61, (2, 96), generator=torch.Generator().manual_seed(1))
    calibrate(model, ids)
    return model, ids


def stream(model, ids, sizes):
    state, pieces, start = None, [], 0
    while start < ids.shape[1]:
        size = sizes[len(pieces) % len(sizes)]
        out = model(ids[:, start : start + size], state=state, return_state=True)
        state = out["state"]
        pieces.append(out["logits"])
        start += size
    return torch.cat(pieces, 1), state


@pytest.mark.parametrize("sizes", [[1], [7], [32], [3, 17, 1, 40, 9, 2]], ids=["1", "7", "32", "mixed"])
def test_streaming_equals_full_pass_float64(model64, sizes):
    model, ids = model64
    full = model(ids, return_state=True)
    routing = full["info"]["routing"]
    assert 0.1 < routing["early_exit_rate"] < 0.9  # the router acts
    assert 0.1 < full["info"]["avg_probe_activation"] < 0.9  # the probes fire on some tokens only
    logits, _ = stream(model, ids, sizes)
    assert (logits - full["logits"]).abs().max().item() <= 1e-9


def test_streaming_equals_full_pass_float32(small_config, calibrate):
    torch.manual_seed(0)
    model = Synthe(small_config()).eval()
    ids = torch.randint(0, 61, (2, 80), generator=torch.Generator().manual_seed(2))
    calibrate(model, ids)
    full = model(ids)
    logits, _ = stream(model, ids, [5, 11, 32])
    assert 0 < full["info"]["routing"]["early_exit_rate"] < 1
    assert (logits - full["logits"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_causality_bit_identical(model64, mode):
    model, ids = model64
    getattr(model, mode)()
    base = model(ids, early_exit=True)["logits"]
    for t in (0, 5, 16, 47, 95):
        perturbed = ids.clone()
        perturbed[:, t] = (perturbed[:, t] + 1) % 61
        logits = model(perturbed, early_exit=True)["logits"]
        assert torch.equal(logits[:, :t], base[:, :t])
        assert not torch.equal(logits[:, t], base[:, t])


def test_never_exit_equals_full_depth_exactly(model64):
    model, ids = model64
    model.router.threshold = 1.0  # sigmoid(score) > 1 never holds
    with_router = model(ids, early_exit=True)
    without = model(ids, early_exit=False)
    assert torch.equal(with_router["logits"], without["logits"])
    assert with_router["info"]["routing"]["early_exit_rate"] == 0.0
    assert with_router["info"]["routing"]["blocks_per_token"] == model.config.n_layers


def test_early_exit_skips_real_compute(model64):
    model, ids = model64
    flops = {}
    for exits in (False, True):
        with FlopCounterMode(display=False) as counter:
            out = model(ids, early_exit=exits)
        flops[exits] = counter.get_total_flops()
    assert out["info"]["routing"]["blocks_per_token"] < model.config.n_layers
    assert flops[True] < 0.95 * flops[False]


def test_exited_token_costs_nothing_in_later_blocks(model64):
    """Decoding one token that exits after the first exit point: the later blocks do no
    matrix products at all (only their windows move)."""
    model, ids = model64
    out = model(ids[:1, :20], return_state=True)
    model.router.threshold = -1.0  # every token exits at the first exit point
    with FlopCounterMode(display=False) as counter:
        step = model(ids[:1, 20:21], state=out["state"], return_state=True)
    model.router.threshold = 1.0
    with FlopCounterMode(display=False) as full_counter:
        model(ids[:1, 20:21], state=out["state"])
    first_exit = model.config.exit_layers[0]
    assert step["info"]["routing"]["blocks_per_token"] == first_exit + 1
    assert counter.get_total_flops() < full_counter.get_total_flops()


def test_generation_from_state_equals_recomputing_the_prefix(small_config, calibrate):
    torch.manual_seed(0)
    model = Synthe(small_config(d_model=16, n_layers=3, exit_layers=[1], probe_layers=[1])).double().eval()
    calibrate(model, torch.randint(0, 61, (1, 64), generator=torch.Generator().manual_seed(4)))
    prompt = torch.randint(0, 61, (1, 5), generator=torch.Generator().manual_seed(5))
    generated = model.generate(prompt, max_new_tokens=256, temperature=0.0)
    sequence = prompt
    for _ in range(256):
        nxt = model(sequence)["logits"][:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, nxt], 1)
    assert torch.equal(generated, sequence)


def test_state_size_is_constant_in_context_length(small_config):
    model = Synthe(small_config()).eval()
    ids = torch.randint(0, 61, (1, 400))
    sizes = []
    state = None
    for start in range(0, 400, 100):
        out = model(ids[:, start : start + 100], state=state, return_state=True)
        state = out["state"]
        sizes.append(state_nbytes(state))
    assert len(set(sizes)) == 1 and int(state["position"]) == 400


def test_decode_work_is_constant_in_context_length(small_config):
    model = Synthe(small_config(probe_threshold=2.0)).eval()  # probes always fire: fixed work
    ids = torch.randint(0, 61, (1, 301))
    flops = []
    for length in (20, 300):
        state = model(ids[:, :length], return_state=True, early_exit=False)["state"]
        with FlopCounterMode(display=False) as counter:
            model(ids[:, length : length + 1], state=state, early_exit=False)
        flops.append(counter.get_total_flops())
    assert flops[0] == flops[1] > 0


def test_state_save_load_round_trip(model64, tmp_path):
    model, ids = model64
    first = model(ids[:, :50], return_state=True)
    path = tmp_path / "state.pt"
    save_state(first["state"], path)
    loaded = load_state(path)
    a = model(ids[:, 50:], state=first["state"])
    b = model(ids[:, 50:], state=loaded)
    assert torch.equal(a["logits"], b["logits"])


def test_training_loss_has_the_router_objective(small_config):
    torch.manual_seed(0)
    model = Synthe(small_config()).train()
    ids = torch.randint(0, 61, (2, 40))
    out = model(ids[:, :-1], targets=ids[:, 1:])
    info = out["info"]
    assert info["router_aux_loss"] > 0
    expected = info["lm_loss"] + model.config.router_aux_weight * info["router_aux_loss"]
    assert abs(out["loss"].item() - expected) < 1e-5
    out["loss"].backward()
    assert model.router.heads[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())
    assert set(info) == {"avg_kalman_confidence", "avg_probe_activation", "lm_loss", "router_aux_loss", "routing"}
    assert 0 < info["avg_kalman_confidence"] <= 1
    model.eval()
    assert model(ids[:, :-1], targets=ids[:, 1:])["info"]["router_aux_loss"] is None


def test_bad_inputs_are_rejected(small_config):
    model = Synthe(small_config())
    with pytest.raises(ValueError, match="batch, time"):
        model(torch.randint(0, 61, (5,)))
    with pytest.raises(ValueError, match="outside"):
        model(torch.tensor([[1, 61]]))
    with pytest.raises(ValueError, match="targets shape"):
        model(torch.randint(0, 61, (1, 5)), targets=torch.randint(0, 61, (1, 4)))
    with pytest.raises(ValueError, match="state"):
        model(torch.randint(0, 61, (1, 5)), state={"blocks": []})
    with pytest.raises(TypeError, match="SyntheConfig"):
        Synthe({"d_model": 8})
