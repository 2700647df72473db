"""The model, K-FAC and the trainer on a CUDA device (skipped without one)."""

import pytest
import torch

from synthfuse.koda.model.transformer import KodaModelConfig, KodaTransformer

pytestmark = pytest.mark.cuda


def test_model_on_cuda_matches_cpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    cfg = KodaModelConfig(vocab_size=40, d_model=32, n_layers=3, n_heads=2, d_ff=64, n_experts=4, moe_every=1)
    cpu = KodaTransformer(cfg).eval()
    gpu = KodaTransformer(cfg, device="cuda").eval()
    gpu.load_state_dict(cpu.state_dict())
    tokens = torch.randint(0, 40, (3, 17))
    a, b = cpu(tokens), gpu(tokens.cuda())
    torch.testing.assert_close(b.logits.cpu(), a.logits, atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(b.ball_dist.cpu(), a.ball_dist, atol=2e-4, rtol=2e-4)


def test_trainer_on_cuda_trains_and_resumes(tmp_path):
    from synthfuse.koda.train.config import load_config
    from synthfuse.koda.train.trainer import KodaTrainer

    cfg = load_config({
        "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "n_experts": 2, "ball_dim": 4},
        "data": {"n_programs": 60, "seed": 1},
        "loss": {"wgan": {"n_critic": 2, "critic_channels": 16}},
        "optim": {"lr": 0.05, "name": "sgd", "warmup_steps": 2, "kfac": {"enabled": True}},
        "train": {"steps": 4, "batch_size": 6, "log_every": 1, "eval_every": 100, "checkpoint_every": 2,
                  "progress": False, "device": "cuda"},
    })
    full = KodaTrainer(cfg, out_dir=tmp_path / "full", resume=False)
    before = full.evaluate()
    history = full.fit()
    assert all(torch.isfinite(torch.tensor(h["total"])) for h in history)
    assert full.evaluate() < before
    part = KodaTrainer(cfg, out_dir=tmp_path / "part", resume=False)
    part.fit(steps=2)
    resumed = KodaTrainer(cfg, out_dir=tmp_path / "part", resume=True)
    resumed.fit()
    got = [h["ce"] for h in resumed.history[2:]]
    assert got == pytest.approx([h["ce"] for h in history[2:]], rel=1e-4)
