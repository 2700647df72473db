"""synthfuse.shared: the thin toolkit the synthfuse libraries stand on.

Public API
----------
- :mod:`synthfuse.shared.io`: :func:`atomic_open`, :func:`atomic_write_bytes`,
  :func:`atomic_write_text`.
- :mod:`synthfuse.shared.cli`: the ``synthfuse`` command; :mod:`synthfuse.shared.demo`: the
  demo runner.
- :mod:`synthfuse.shared.backend`: :func:`get_namespace` (numpy / torch / jax dispatch),
  :class:`ArrayNamespace`, :func:`import_optional`.
- :mod:`synthfuse.shared.manifold`: :class:`Manifold`, :class:`Euclidean`, :class:`Sphere`,
  :class:`PoincareBall`, :class:`Lorentz`, :func:`lorentz_to_poincare`,
  :func:`poincare_to_lorentz` (numpy, torch and jax arrays).
- :mod:`synthfuse.shared.config`: :class:`YamlConfig` (dataclass configs: field type checks,
  dict / YAML round trip, unknown keys rejected), :func:`check_value`, :func:`validate_mapping`
  (PyYAML imported by the YAML methods only: ``synthfuse-shared[yaml]``).
- torch only, imported on first use (``from synthfuse.shared import RiemannianAdam`` imports
  torch; ``import synthfuse.shared`` never does): :mod:`synthfuse.shared.optim`:
  :class:`RiemannianSGD`, :class:`RiemannianAdam`; :mod:`synthfuse.shared.params`:
  :func:`flatten`, :func:`unflatten`, :func:`unflatten_dict`, :func:`project_layer_tangent`,
  :func:`interpolate`; :mod:`synthfuse.shared.sampling`: :func:`filter_logits`,
  :func:`sample_next`, :func:`check_sampling_args` (temperature, top-k, top-p).
- imported on first use (they load torch, or POT which loads torch/jax when installed):
  :mod:`synthfuse.shared.ntk`: :func:`empirical_ntk`, :func:`empirical_ntk_jax`,
  :func:`ntk_distance`; :mod:`synthfuse.shared.ot`: :func:`coupling`, :func:`w2`,
  :func:`gaussian_w2`, :func:`barycentric_projection`, :func:`match_units`.
- torch only, imported on first use: :mod:`synthfuse.shared.distributed` (data parallelism for
  plain models): :func:`init_distributed`, :class:`DistributedEnv`, :func:`apply_fsdp`,
  :func:`apply_ddp`, :func:`seed_everything`, :class:`ResumableSampler`,
  :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`latest_checkpoint`,
  :func:`measure_memory`, :func:`zero_memory`, :func:`spawn_local`, :func:`check_finite` and helpers.
"""

import importlib

from synthfuse.shared.__about__ import __version__
from synthfuse.shared.backend import ArrayNamespace, get_namespace, import_optional
from synthfuse.shared.config import YamlConfig, check_value, validate_mapping
from synthfuse.shared.io import atomic_open, atomic_write_bytes, atomic_write_text
from synthfuse.shared.manifold import (Euclidean, Lorentz, Manifold, PoincareBall, Sphere, lorentz_to_poincare,
                                       poincare_to_lorentz)

# Public names that need torch or jax: {name: module}, imported by __getattr__ on first use.
_LAZY = {
    "RiemannianAdam": "synthfuse.shared.optim",
    "RiemannianSGD": "synthfuse.shared.optim",
    "flatten": "synthfuse.shared.params",
    "interpolate": "synthfuse.shared.params",
    "project_layer_tangent": "synthfuse.shared.params",
    "unflatten": "synthfuse.shared.params",
    "unflatten_dict": "synthfuse.shared.params",
    "check_sampling_args": "synthfuse.shared.sampling",
    "filter_logits": "synthfuse.shared.sampling",
    "sample_next": "synthfuse.shared.sampling",
    "empirical_ntk": "synthfuse.shared.ntk",
    "empirical_ntk_jax": "synthfuse.shared.ntk",
    "ntk_distance": "synthfuse.shared.ntk",
    "barycentric_projection": "synthfuse.shared.ot",
    "coupling": "synthfuse.shared.ot",
    "gaussian_w2": "synthfuse.shared.ot",
    "match_units": "synthfuse.shared.ot",
    "w2": "synthfuse.shared.ot",
    "CheckpointInfo": "synthfuse.shared.distributed",
    "checkpoint_info": "synthfuse.shared.distributed",
    "DistributedEnv": "synthfuse.shared.distributed",
    "MemoryBreakdown": "synthfuse.shared.distributed",
    "NonFiniteError": "synthfuse.shared.distributed",
    "ResumableSampler": "synthfuse.shared.distributed",
    "all_reduce_mean": "synthfuse.shared.distributed",
    "all_reduce_sum": "synthfuse.shared.distributed",
    "apply_ddp": "synthfuse.shared.distributed",
    "apply_fsdp": "synthfuse.shared.distributed",
    "barrier": "synthfuse.shared.distributed",
    "check_finite": "synthfuse.shared.distributed",
    "choose_backend": "synthfuse.shared.distributed",
    "count_parameters": "synthfuse.shared.distributed",
    "destroy_distributed": "synthfuse.shared.distributed",
    "init_distributed": "synthfuse.shared.distributed",
    "latest_checkpoint": "synthfuse.shared.distributed",
    "resume_point": "synthfuse.shared.distributed",
    "load_checkpoint": "synthfuse.shared.distributed",
    "measure_memory": "synthfuse.shared.distributed",
    "nonfinite_flags": "synthfuse.shared.distributed",
    "optimizer_states_per_param": "synthfuse.shared.distributed",
    "raise_if_nonfinite": "synthfuse.shared.distributed",
    "rank_logger": "synthfuse.shared.distributed",
    "rank_seed": "synthfuse.shared.distributed",
    "save_checkpoint": "synthfuse.shared.distributed",
    "seed_everything": "synthfuse.shared.distributed",
    "spawn_local": "synthfuse.shared.distributed",
    "zero_memory": "synthfuse.shared.distributed",
}

__all__ = [
    "__version__", "atomic_open", "atomic_write_bytes", "atomic_write_text",
    "ArrayNamespace", "get_namespace", "import_optional",
    "YamlConfig", "check_value", "validate_mapping",
    "Euclidean", "Lorentz", "Manifold", "PoincareBall", "Sphere", "lorentz_to_poincare", "poincare_to_lorentz",
    *_LAZY,
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'synthfuse.shared' has no attribute {name!r}")
    try:
        module = importlib.import_module(_LAZY[name])
    except ModuleNotFoundError as err:
        if err.name in ("torch", "jax"):
            raise ImportError(
                f"synthfuse.shared.{name} needs {err.name}; install it with "
                f"`pip install 'synthfuse-shared[{err.name}]'`"
            ) from err
        raise
    return getattr(module, name)
