"""SYNTHE ``tiny`` vs a same-size causal Transformer: training throughput and decoding cost.

Models: ``SyntheConfig.tiny()`` (~16 M parameters at vocabulary 32,000) and the Transformer
baseline of the same width with its depth chosen to match the parameter count
(``TransformerConfig.matching``), both float32 on one thread, random tokens.

- **train**: tokens per second of full training steps (forward, backward with the router
  objective, AdamW) at T = 256, 1024, 4096 with ``max(1, 2048 // T)`` sequences per step
  (vocabulary 32,000: the LM head is about half of the tiny model's arithmetic).
- **decode**: the context is read once (in pieces of 1024 tokens, from the carried state or
  KV cache) up to 1k, 2k, 4k, 8k and 16k tokens; then ``--steps`` single-token steps are timed
  (ms per token) and the memory the model keeps between tokens is reported (SYNTHE: its whole
  recurrent state; Transformer: the filled part of its KV cache).

Time: median over ``--repeats`` measurements after a warm-up. Ratios are against the
Transformer measured in the same run; ``flatness`` is ms/token at a context over ms/token at
the first context.

    python benchmarks/synthe_throughput.py [--quick] [--repeats 3] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from synthfuse.shared.demo import format_table
from synthfuse.shared.io import atomic_open, atomic_write_text
from _timing import median_seconds
from synthfuse.synthe import Synthe, SyntheConfig, TransformerBaseline, TransformerConfig, state_nbytes

PIECE = 1024


def train_tokens_per_second(model, vocab: int, t: int, repeats: int, tokens: int = 2048) -> float:
    b = max(1, tokens // t)
    ids = torch.randint(0, vocab, (b, t + 1), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        loss = model(ids[:, :-1], targets=ids[:, 1:])["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return b * t / median_seconds(step, repeats)


class SyntheDecoder:
    def __init__(self, model):
        self.model, self.state = model.eval(), None

    def read(self, ids):
        out = self.model(ids, state=self.state, return_state=True, early_exit=False)
        self.state = out["state"]
        return out["logits"][:, -1:].argmax(-1)

    def memory_bytes(self) -> int:
        return state_nbytes(self.state)


class TransformerDecoder:
    def __init__(self, model, capacity):
        self.model, self.cache = model.eval(), model.init_cache(1, capacity)

    def read(self, ids):
        return self.model(ids, cache=self.cache)["logits"][:, -1:].argmax(-1)

    def memory_bytes(self) -> int:
        keys = self.cache["keys"]
        return 2 * keys[:, :, :, : self.cache["length"]].numel() * keys.element_size()


@torch.no_grad()
def decode_profile(decoder, vocab: int, contexts: list[int], steps: int, repeats: int) -> list[dict]:
    """Read up to each context length, then time ``steps`` single-token steps ``repeats`` times."""
    gen = torch.Generator().manual_seed(1)
    rows, length = [], 0
    for context in contexts:
        while length < context:
            n = min(PIECE, context - length)
            decoder.read(torch.randint(0, vocab, (1, n), generator=gen))
            length += n
        token = torch.randint(0, vocab, (1, 1), generator=gen)
        times = []
        for _ in range(repeats + 1):  # the first pass is the warm-up
            t0 = time.perf_counter()
            for _ in range(steps):
                token = decoder.read(token)
            times.append((time.perf_counter() - t0) / steps)
            length += steps
        rows.append({"context": context, "ms_per_token": 1e3 * statistics.median(times[1:]),
                     "memory_MiB": decoder.memory_bytes() / 2**20})
    return rows


def plot(train_rows, decode_rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for model in ("synthe", "transformer"):
        tr = [r for r in train_rows if r["model"] == model]
        ax1.plot([r["T"] for r in tr], [r["train_tokens_per_s"] for r in tr], "o-", label=model)
        de = [r for r in decode_rows if r["model"] == model]
        ax2.plot([r["context"] for r in de], [r["ms_per_token"] for r in de], "o-", label=model)
    lengths = sorted({r["T"] for r in train_rows})
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(lengths, [str(t) for t in lengths])
    ax1.minorticks_off()
    ax1.set(xlabel="sequence length T", ylabel="training tokens / s", title="training (1 thread)")
    contexts = sorted({r["context"] for r in decode_rows})
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(contexts, [str(c) for c in contexts])
    ax2.minorticks_off()
    ax2.set(xlabel="context tokens", ylabel="ms per generated token", title="decoding (1 thread)")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: T=64, contexts 64 and 128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=32, help="decoding steps timed per context")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = SyntheConfig.tiny()
    lengths = [64] if args.quick else [256, 1024, 4096]
    contexts = [64, 128] if args.quick else [1024, 2048, 4096, 8192, 16384]
    repeats, steps, tokens = (1, 2, 128) if args.quick else (args.repeats, args.steps, 2048)
    synthe = Synthe(config)
    transformer = TransformerBaseline(TransformerConfig.matching(config))
    print(f"synthe tiny: {synthe.num_parameters():,} parameters; transformer "
          f"({transformer.config.n_layers} layers): {transformer.num_parameters():,}", flush=True)

    train_rows = []
    for t in lengths:
        for name, model in (("synthe", synthe), ("transformer", transformer)):
            tps = train_tokens_per_second(model, config.vocab_size, t, repeats, tokens)
            train_rows.append({"model": name, "T": t, "train_tokens_per_s": tps})
            print(f"  train {name:11s} T={t:5d}: {tps:8.1f} tokens/s", flush=True)
    for row in train_rows:
        anchor = next(r for r in train_rows if r["model"] == "transformer" and r["T"] == row["T"])
        row["vs_transformer"] = row["train_tokens_per_s"] / anchor["train_tokens_per_s"]

    capacity = contexts[-1] + (repeats + 1) * steps * len(contexts)
    decode_rows = []
    for name, decoder in (("synthe", SyntheDecoder(synthe)), ("transformer", TransformerDecoder(transformer, capacity))):
        for row in decode_profile(decoder, config.vocab_size, contexts, steps, repeats):
            decode_rows.append({"model": name, **row})
            print(f"  decode {name:11s} context={row['context']:6d}: {row['ms_per_token']:7.2f} ms/token, "
                  f"{row['memory_MiB']:8.2f} MiB", flush=True)
    for row in decode_rows:
        first = next(r for r in decode_rows if r["model"] == row["model"])
        anchor = next(r for r in decode_rows if r["model"] == "transformer" and r["context"] == row["context"])
        row["flatness"] = row["ms_per_token"] / first["ms_per_token"]
        row["speedup_vs_transformer"] = anchor["ms_per_token"] / row["ms_per_token"]

    text = "## Training throughput\n\n" + format_table(train_rows) + "\n## Decoding\n\n" + format_table(decode_rows)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "synthe_throughput.md", text)
    plot(train_rows, decode_rows, args.out / "synthe_throughput.png")
    print(f"wrote {args.out / 'synthe_throughput.md'} and {args.out / 'synthe_throughput.png'}")
    return train_rows, decode_rows


if __name__ == "__main__":
    main()
