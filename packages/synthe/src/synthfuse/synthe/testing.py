"""Helpers for tests and demonstrations of SYNTHE models (not used by the model itself)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor

from synthfuse.synthe.model import Synthe


@contextlib.contextmanager
def recording_scores(model: Synthe) -> Iterator[dict[str, list[Tensor]]]:
    """Record, while the context is open, every router exit probability and Kalman confidence.

    Yields ``{"exit_probability": [...], "confidence": [...]}``: one flat tensor per exit point
    (``sigmoid`` of the router score) and per block (confidence of each token it ran) and call.
    """
    sinks: dict[str, list[Tensor]] = {"exit_probability": [], "confidence": []}

    def recording(method, sink, transform):
        def wrapper(*args, **kwargs):
            out = method(*args, **kwargs)
            sink.append(transform(out).detach().flatten())
            return out

        return wrapper

    model.router.score = recording(model.router.score, sinks["exit_probability"], torch.sigmoid)
    for block in model.blocks:
        block.kalman.filter = recording(block.kalman.filter, sinks["confidence"], lambda out: out.confidence)
    try:
        yield sinks
    finally:  # drop the instance attributes: the class methods are back
        del model.router.score
        for block in model.blocks:
            del block.kalman.filter


def calibrate_thresholds(model: Synthe, input_ids: Tensor, quantile: float = 0.5) -> None:
    """Set the router and probe thresholds at a quantile of their scores on ``input_ids``.

    With the default median, about half of the tokens leave at each exit point and the probes
    fire on about half of the tokens, so an untrained model exercises both paths (a fresh
    router never reaches the default 0.9 threshold).
    """
    with recording_scores(model) as sinks, torch.no_grad():
        model(input_ids, early_exit=False)
    model.router.threshold = torch.cat(sinks["exit_probability"]).double().quantile(quantile).item()
    probe_threshold = torch.cat(sinks["confidence"]).double().quantile(quantile).item()
    for block in model.blocks:
        if block.probe is not None:
            block.probe.threshold = probe_threshold
