"""The package is installed, versioned on its own, and reachable from the synthfuse CLI."""

import synthfuse.acr
from synthfuse.shared.testing import assert_package_cli, modules_imported_by


def test_acr_version_and_cli():
    assert synthfuse.acr.__version__
    assert_package_cli("acr", synthfuse.acr.__version__)


def test_acr_imports_no_sibling_package():
    mods = modules_imported_by("import synthfuse.acr")
    assert "synthfuse.acr" in mods
    assert not [m for m in mods if m.split(".")[:2] in [['synthfuse', 'retrain'], ['synthfuse', 'synthe'], ['synthfuse', 'koda']]]


def test_acr_import_pulls_no_torch():
    # `pip install synthfuse-acr` does not install torch, so importing the package must not need it.
    tops = {m.split(".")[0] for m in modules_imported_by("import synthfuse.acr")}
    assert "torch" not in tops
