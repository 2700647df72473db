"""The package is installed, versioned on its own, and reachable from the synthfuse CLI."""

import synthfuse.retrain
from synthfuse.shared.testing import assert_package_cli, modules_imported_by


def test_retrain_version_and_cli():
    assert synthfuse.retrain.__version__
    assert_package_cli("retrain", synthfuse.retrain.__version__)


def test_retrain_imports_no_sibling_package():
    mods = modules_imported_by("import synthfuse.retrain")
    assert "synthfuse.retrain" in mods
    assert not [m for m in mods if m.split(".")[:2] in [['synthfuse', 'acr'], ['synthfuse', 'synthe'], ['synthfuse', 'koda']]]
