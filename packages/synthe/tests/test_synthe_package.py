"""The package is installed, versioned on its own, and reachable from the synthfuse CLI."""

import synthfuse.synthe
from synthfuse.shared.testing import assert_package_cli, modules_imported_by


def test_synthe_version_and_cli():
    assert synthfuse.synthe.__version__
    assert_package_cli("synthe", synthfuse.synthe.__version__)


def test_synthe_imports_no_sibling_package():
    mods = modules_imported_by("import synthfuse.synthe")
    assert "synthfuse.synthe" in mods
    assert not [m for m in mods if m.split(".")[:2] in [['synthfuse', 'acr'], ['synthfuse', 'retrain'], ['synthfuse', 'koda']]]


def test_synthe_import_pulls_no_jax():
    # `pip install synthfuse-synthe` does not install jax, so importing the package must not need it.
    tops = {m.split(".")[0] for m in modules_imported_by("import synthfuse.synthe")}
    assert "jax" not in tops
