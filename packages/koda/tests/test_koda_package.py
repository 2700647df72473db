"""The package is installed, versioned on its own, and reachable from the synthfuse CLI."""

import synthfuse.koda
from synthfuse.shared.testing import assert_package_cli, modules_imported_by


def test_koda_version_and_cli():
    assert synthfuse.koda.__version__
    assert_package_cli("koda", synthfuse.koda.__version__)


def test_koda_imports_no_sibling_package():
    mods = modules_imported_by("import synthfuse.koda")
    assert "synthfuse.koda" in mods
    assert not [m for m in mods if m.split(".")[:2] in [['synthfuse', 'acr'], ['synthfuse', 'retrain'], ['synthfuse', 'synthe']]]
