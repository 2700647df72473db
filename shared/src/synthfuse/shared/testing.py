"""Test helpers shared by the synthfuse packages' test suites (not used at run time)."""

from __future__ import annotations

import json
import subprocess
import sys


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (same environment); return the finished process."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )


def modules_imported_by(statement: str) -> set[str]:
    """Names of all modules in ``sys.modules`` after running ``statement`` in a fresh interpreter."""
    proc = run_python(f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))")
    if proc.returncode != 0:
        raise AssertionError(f"{statement!r} failed:\n{proc.stderr}")
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def assert_package_cli(name: str, version: str) -> None:
    """Check ``python -m synthfuse.<name> --version`` and that ``synthfuse <name>`` is registered."""
    from synthfuse.shared.cli import installed_commands

    proc = subprocess.run(
        [sys.executable, "-m", f"synthfuse.{name}", "--version"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"synthfuse-{name} {version}", proc.stdout
    assert name in installed_commands(), f"synthfuse.commands has no entry point {name!r}"
    proc = subprocess.run(
        [sys.executable, "-m", "synthfuse.shared", name, "--version"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"synthfuse-{name} {version}", (
        proc.stdout + proc.stderr
    )
