"""Helpers for tests and demonstrations of SYNTHE models (not used by the model itself)."""

from __future__ import annotations

import torch
from torch import Tensor

from synthfuse.synthe.model import Synthe


def calibrate_thresholds(model: Synthe, input_ids: Tensor, quantile: float = 0.5) -> None:
    """Set the router and probe thresholds at a quantile of their scores on ``input_ids``.

    With the default median, about half of the tokens leave at each exit point and the probes
    fire on about half of the tokens, so an untrained model exercises both paths (a fresh
    router never reaches the default 0.9 threshold).
    """
    scores, confidences = [], []

    def recording(method, sink, transform):
        def wrapper(*args, **kwargs):
            out = method(*args, **kwargs)
            sink.append(transform(out).detach().flatten())
            return out

        return wrapper

    model.router.score = recording(model.router.score, scores, torch.sigmoid)
    for block in model.blocks:
        block.kalman.filter = recording(block.kalman.filter, confidences, lambda out: out.confidence)
    try:
        with torch.no_grad():
            model(input_ids, early_exit=False)
    finally:  # drop the instance attributes: the class methods are back
        del model.router.score
        for block in model.blocks:
            del block.kalman.filter
    model.router.threshold = torch.cat(scores).double().quantile(quantile).item()
    probe_threshold = torch.cat(confidences).double().quantile(quantile).item()
    for block in model.blocks:
        if block.probe is not None:
            block.probe.threshold = probe_threshold
