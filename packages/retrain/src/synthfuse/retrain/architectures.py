"""Named architectures for the CLI, the benchmarks and the demo.

Checkpoints are plain ``state_dict``\\ s; to load one, the command line must rebuild the module.
``build_architecture("mlp", in_features=64, n_classes=10, hidden=(128,))`` and
``build_architecture("convnet", in_channels=1, n_classes=10, width=16)`` are the two named
architectures; the library itself works with any ``nn.Module`` classifier.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "MLP", "ConvNet", "build_architecture"]


class MLP(nn.Sequential):
    """``Linear → ReLU → … → Linear`` classifier.

    Parameters
    ----------
    in_features : int
        Input size.
    hidden : sequence of int
        Widths of the hidden layers (``(128,)`` is one hidden layer of 128 units).
    n_classes : int
        Output size (logits).
    """

    def __init__(self, in_features: int, hidden: Sequence[int], n_classes: int) -> None:
        widths = [int(in_features), *map(int, hidden)]
        if min(widths) < 1 or n_classes < 1:
            raise ValueError(f"MLP sizes must be positive, got in={in_features}, hidden={list(hidden)}, out={n_classes}")
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], int(n_classes)))
        super().__init__(*layers)


class ConvNet(nn.Sequential):
    """``Conv(3×3) → BN → ReLU → Conv(3×3) → BN → ReLU → AvgPool → Flatten → Linear`` for small images.

    Input shape ``(N, in_channels, H, W)``; the pooling is adaptive (2 × 2), so any ``H, W >= 2``.
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 16) -> None:
        if min(in_channels, n_classes, width) < 1:
            raise ValueError(f"ConvNet sizes must be positive, got {in_channels}, {n_classes}, {width}")
        super().__init__(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * 4, n_classes),
        )


#: name -> builder(input_shape, n_classes, **options)
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": lambda input_shape, n_classes, hidden=(128,): MLP(int(torch.tensor(input_shape).prod()), hidden, n_classes),
    "convnet": lambda input_shape, n_classes, width=16: ConvNet(input_shape[0], n_classes, width),
}


def build_architecture(name: str, input_shape: Sequence[int], n_classes: int, **options) -> nn.Module:
    """Build the named architecture for inputs of shape ``input_shape`` (one sample, no batch dim).

    ``mlp`` takes ``hidden=(w1, w2, ...)`` and flattened inputs; ``convnet`` takes ``width`` and
    ``(C, H, W)`` inputs.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}")
    if name == "convnet" and len(input_shape) != 3:
        raise ValueError(f"convnet needs (C, H, W) inputs, got per-sample shape {tuple(input_shape)}")
    return ARCHITECTURES[name](tuple(input_shape), int(n_classes), **options)
