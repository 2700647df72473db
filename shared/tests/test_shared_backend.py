"""The numpy / torch / jax dispatch and the lazy, torch-free import of synthfuse.shared."""

from __future__ import annotations

import numpy as np
import pytest

from synthfuse.shared.backend import get_namespace, import_optional
from synthfuse.shared.testing import modules_imported_by, run_python


def test_shared_import_does_not_load_torch_or_jax():
    loaded = modules_imported_by("import synthfuse.shared")
    assert "torch" not in loaded and "jax" not in loaded
    loaded = modules_imported_by("from synthfuse.shared import Sphere, PoincareBall, get_namespace")
    assert "torch" not in loaded and "jax" not in loaded


def test_shared_lazy_torch_names_and_missing_extra_message():
    import synthfuse.shared as shared

    assert shared.RiemannianAdam.__module__ == "synthfuse.shared.optim"
    assert shared.interpolate.__module__ == "synthfuse.shared.params"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        shared.nope  # noqa: B018
    # without torch installed, the lazy names say which extra to install
    proc = run_python(
        "import sys; sys.modules['torch'] = None\n"
        "import synthfuse.shared as s\n"
        "try:\n    s.RiemannianSGD\nexcept ImportError as e:\n    print(e)\n"
    )
    assert "pip install 'synthfuse-shared[torch]'" in proc.stdout, proc.stdout + proc.stderr
    with pytest.raises(ImportError, match=r"synthfuse-shared\[no_such_module_xyz\]"):
        import_optional("no_such_module_xyz")


def test_shared_namespace_dispatch_and_mixing_error():
    torch = pytest.importorskip("torch")
    assert get_namespace(np.ones(2), 3.0, None).name == "numpy"
    assert get_namespace(1.0).name == "numpy"
    assert get_namespace(torch.ones(2), 2.0).name == "torch"
    with pytest.raises(TypeError, match="cannot be mixed"):
        get_namespace(torch.ones(2), np.ones(2))


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_shared_namespace_ops_agree_with_numpy(lib):
    torch = pytest.importorskip("torch")
    a = np.array([[0.3, -1.2, 0.0, 0.5], [2.0, 0.1, -0.1, -3.0]])
    x = torch.from_numpy(a) if lib == "torch" else a
    nx = get_namespace(x)
    np.testing.assert_allclose(nx.to_numpy(nx.sum(x)), a.sum(-1, keepdims=True))
    np.testing.assert_allclose(nx.to_numpy(nx.sum(x, axis=0, keepdims=False)), a.sum(0))
    np.testing.assert_allclose(nx.to_numpy(nx.clip(x, -0.5, None)), np.clip(a, -0.5, None))
    np.testing.assert_allclose(nx.to_numpy(nx.norm(x)), np.linalg.norm(a, axis=-1, keepdims=True))
    np.testing.assert_array_equal(nx.to_numpy(nx.first_argmin_onehot(nx.abs(x))),
                                  [[0, 0, 1, 0], [0, 1, 0, 0]])  # ties: the first
    np.testing.assert_array_equal(nx.to_numpy(nx.first_argmin_onehot(x * 0)), [[1, 0, 0, 0]] * 2)
    assert nx.eps(x) == np.finfo(np.float64).eps
    assert nx.to_numpy(nx.asarray(0.5, like=x)).dtype == np.float64
    z1, z2 = nx.normal((3, 2), generator=4, like=x), nx.normal((3, 2), generator=4, like=x)
    np.testing.assert_array_equal(nx.to_numpy(z1), nx.to_numpy(z2))
    assert tuple(z1.shape) == (3, 2)


def test_shared_safe_norm_has_zero_gradient_at_zero():
    torch = pytest.importorskip("torch")
    nx = get_namespace(torch.zeros(1))
    x = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    n = nx.norm(x)
    (g,) = torch.autograd.grad(n.sum(), x)
    assert torch.equal(n, torch.zeros(2, 1, dtype=torch.float64))
    assert torch.equal(g, torch.zeros_like(g))
    y = torch.tensor([[3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(nx.norm(y).sum(), y)
    torch.testing.assert_close(g, torch.tensor([[0.6, 0.8]], dtype=torch.float64))


def test_shared_safe_ratios_match_their_functions_across_the_switch():
    """The Taylor branches of sin(s)/s, s/sin(s), tanh(s)/s, artanh(s)/s meet the exact ones."""
    from synthfuse.shared.manifold import _safe

    nx = get_namespace(np.zeros(1))
    s = np.array([0.0, 1e-8, 1e-4, 1.1e-4, 0.0199, 0.02, 0.3])
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = {
            "sinc": np.where(s == 0, 1.0, np.sin(s) / s),
            "x_over_sin": np.where(s == 0, 1.0, s / np.sin(s)),
            "tanhc": np.where(s == 0, 1.0, np.tanh(s) / s),
            "artanhc": np.where(s == 0, 1.0, np.arctanh(s) / s),
        }
    for name, expected in exact.items():
        np.testing.assert_allclose(getattr(_safe, name)(nx, s), expected, rtol=1e-14, err_msg=name)
        s32 = s.astype(np.float32)
        np.testing.assert_allclose(getattr(_safe, name)(nx, s32), expected, rtol=2e-7, err_msg=name)
