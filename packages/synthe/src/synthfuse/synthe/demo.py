"""``synthfuse demo`` section of synthfuse-synthe.

1. Exact streaming: a float64 SYNTHE model (router and probes acting on about half of the
   tokens) fed in pieces of 1, 7, 32 tokens and mixed sizes gives the full-pass logits.
2. Generation cost per token against the context length, SYNTHE (a fixed-size state) vs a
   same-size causal Transformer (a growing KV cache), one thread.
3. Training: a short MQAR run (Zoology's associative recall, AttentionProbe off) and a small
   character-level model trained for a few seconds, with greedy and sampled text (tinyshakespeare
   when it is in the data cache, else a generated verse; the demo never downloads).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from synthfuse.shared.io import atomic_write_text

from synthfuse.synthe.baseline import TransformerBaseline, TransformerConfig
from synthfuse.synthe.config import SyntheConfig
from synthfuse.synthe.model import Synthe
from synthfuse.synthe.state import state_nbytes
from synthfuse.synthe.testing import calibrate_thresholds


def _streaming_rows(ctx) -> list[dict]:
    config = SyntheConfig(vocab_size=256, d_model=32, n_layers=4, n_heads=2, chunk_size=16, probe_window=16,
                          probe_layers=[1, 3], exit_layers=[1, 2], sentence_len=8, discourse_len=32)
    model = Synthe(config).double().eval()
    ids = torch.randint(0, 256, (2, 160), generator=torch.Generator().manual_seed(ctx.seed))
    calibrate_thresholds(model, ids)
    full = model(ids)
    rows = []
    for name, sizes in (("1", [1]), ("7", [7]), ("32", [32]), ("mixed 3,17,1,40,9,2", [3, 17, 1, 40, 9, 2])):
        state, pieces, start = None, [], 0
        while start < ids.shape[1]:
            size = sizes[len(pieces) % len(sizes)]
            out = model(ids[:, start : start + size], state=state, return_state=True)
            state, start = out["state"], start + size
            pieces.append(out["logits"])
        err = (torch.cat(pieces, 1) - full["logits"]).abs().max().item()
        rows.append({"pieces": name, "max_abs_logit_diff": err,
                     "early_exit_rate": full["info"]["routing"]["early_exit_rate"],
                     "probe_activation": full["info"]["avg_probe_activation"]})
    return rows


@torch.no_grad()
def _decode_ms(read, vocab: int, contexts: list[int], steps: int, progress) -> list[tuple[float, int]]:
    gen = torch.Generator().manual_seed(0)
    results, length = [], 0
    for context in progress(contexts, desc="synthe demo: decoding"):
        while length < context:
            n = min(1024, context - length)
            read(torch.randint(0, vocab, (1, n), generator=gen))
            length += n
        token = torch.randint(0, vocab, (1, 1), generator=gen)
        read(token)  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            token = read(token)[1]
        results.append((1e3 * (time.perf_counter() - t0) / steps, read(None)[0]))
        length += steps + 1
    return results


def _generation_rows(ctx) -> list[dict]:
    config = SyntheConfig.tiny(vocab_size=256) if ctx.full else SyntheConfig(vocab_size=256, d_model=128, n_layers=4, n_heads=4)
    contexts = [1024, 4096, 16384] if ctx.full else [256, 1024, 4096]
    torch.manual_seed(ctx.seed)
    synthe = Synthe(config).eval()
    transformer = TransformerBaseline(TransformerConfig.matching(config)).eval()
    state = {"s": None}
    cache = transformer.init_cache(1, contexts[-1] + 64 * len(contexts))

    def synthe_read(ids):
        if ids is None:
            return state_nbytes(state["s"]), None
        out = synthe(ids, state=state["s"], return_state=True, early_exit=False)
        state["s"] = out["state"]
        return None, out["logits"][:, -1:].argmax(-1)

    def transformer_read(ids):
        if ids is None:
            return 2 * cache["keys"][:, :, :, : cache["length"]].numel() * cache["keys"].element_size(), None
        return None, transformer(ids, cache=cache)["logits"][:, -1:].argmax(-1)

    steps = 16
    s_rows = _decode_ms(synthe_read, 256, contexts, steps, ctx.progress)
    t_rows = _decode_ms(transformer_read, 256, contexts, steps, ctx.progress)
    return [
        {"context": c, "synthe_ms_per_token": s[0], "transformer_ms_per_token": t[0],
         "synthe_state_KiB": s[1] / 1024, "transformer_kv_KiB": t[1] / 1024}
        for c, s, t in zip(contexts, s_rows, t_rows)
    ]


def _training_rows(ctx) -> tuple[list[dict], str]:
    from synthfuse.synthe.train import RunConfig, Trainer, ZoologySpec, run_zoology
    from synthfuse.synthe.train.config import DataConfig, TrainConfig
    from synthfuse.synthe.train.text import default_cache_dir

    spec = ZoologySpec(seq_len=64, num_kv_pairs=4, vocab_size=8192, steps=1500, device="cpu", seed=ctx.seed) if ctx.full \
        else ZoologySpec(seq_len=32, num_kv_pairs=2, vocab_size=64, d_model=64, steps=120, batch_size=32,
                         lr=1e-2, eval_interval=40, eval_batches=4, device="cpu", seed=ctx.seed)
    rows = [{k: v for k, v in r.items() if k != "curve"} for r in run_zoology(spec, ["synthe"], progress=False)]
    cached = Path(default_cache_dir()) / "tinyshakespeare.txt"
    if cached.exists():
        text = cached.read_text(encoding="utf-8")[: None if ctx.full else 200_000]
    else:
        words = "the king shall sleep and wake in the night while we weep for my lord of york".split()
        gen = torch.Generator().manual_seed(ctx.seed)
        text = "\n".join(" ".join(words[i] for i in torch.randint(0, len(words), (8,), generator=gen).tolist())
                         for _ in range(3000))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        atomic_write_text(corpus, text)
        run = RunConfig(
            model=SyntheConfig(d_model=64, n_layers=2, n_heads=2, chunk_size=64, probe_window=16),
            data=DataConfig(name=str(corpus), seq_len=64),
            train=TrainConfig(batch_size=16, lr=3e-3, warmup_steps=20, max_steps=2000 if ctx.full else 400,
                              eval_interval=100, eval_batches=4, time_budget_s=120.0 if ctx.full else 8.0, device="cpu",
                              seed=ctx.seed),
        )
        trainer = Trainer(run, progress=False)
        final = trainer.fit()
        rows.append({"task": "text (char)", "variant": "synthe", "steps": trainer.step,
                     "params": sum(p.numel() for p in trainer.model.parameters()), "val_acc": final["val_acc"],
                     "val_loss": final["val_loss"]})
        prompt = text[:1]
        sample = (f"greedy : {prompt}{trainer.sample(prompt, 120, temperature=0.0)!r}\n"
                  f"sampled: {prompt}{trainer.sample(prompt, 120, temperature=0.8, top_k=20)!r}")
    return rows, sample


def run(ctx) -> dict:
    """Run the section; returns headline figures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stream = _streaming_rows(ctx)
        ctx.table("synthe_streaming", stream, "Streaming in pieces vs one full pass (float64, router and probes on)")
        gen = _generation_rows(ctx)
        ctx.table("synthe_generation", gen, "Per-token generation time and carried memory vs context (1 thread)")
        trained, sample = _training_rows(ctx)
        ctx.table("synthe_training", trained, "Short training runs: MQAR (probe off) and a char-level text model")
        print("SYNTHE text sample after a few seconds of training:\n" + sample, flush=True)
    finally:
        torch.set_num_threads(threads)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["context"] for r in gen], [r["synthe_ms_per_token"] for r in gen], "o-", label="SYNTHE (state)")
    ax.plot([r["context"] for r in gen], [r["transformer_ms_per_token"] for r in gen], "s-", label="Transformer (KV cache)")
    ax.set(xscale="log", xlabel="context tokens", ylabel="ms per generated token", title="Generation cost vs context")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "synthe_generation")
    return {
        "max_stream_logit_diff": max(r["max_abs_logit_diff"] for r in stream),
        "synthe_ms_ratio_longest_vs_shortest": gen[-1]["synthe_ms_per_token"] / gen[0]["synthe_ms_per_token"],
        "transformer_ms_ratio_longest_vs_shortest": gen[-1]["transformer_ms_per_token"] / gen[0]["transformer_ms_per_token"],
        "mqar_val_acc": trained[0]["val_acc"],
        "text_val_loss": trained[-1]["val_loss"],
    }
