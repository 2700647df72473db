"""What the release tools know about the monorepo: where each package lives."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PACKAGES: dict[str, str] = {
    "shared": "shared",
    "acr": "packages/acr",
    "retrain": "packages/retrain",
    "synthe": "packages/synthe",
    "koda": "packages/koda",
}
UNRELEASED = "## [Unreleased]"
_VERSION_RE = re.compile(r'^__version__\s*=\s*["\']([^"\']+)["\']', re.M)


def git(root: Path, *args: str) -> str:
    """Run git in ``root``; return stdout stripped, raise with git's message on failure."""
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def about_file(root: Path, package: str) -> Path:
    return root / PACKAGES[package] / "src" / "synthfuse" / package / "__about__.py"


def read_version(root: Path, package: str) -> str:
    match = _VERSION_RE.search(about_file(root, package).read_text())
    if not match:
        raise RuntimeError(f"no __version__ in {about_file(root, package)}")
    return match.group(1)


def unreleased_body(changelog: str) -> tuple[int, int, str]:
    """Return (start, end, text) of the body under ``## [Unreleased]`` up to the next ``## [``."""
    start = changelog.find(UNRELEASED)
    if start < 0:
        raise RuntimeError(f"CHANGELOG has no '{UNRELEASED}' heading")
    body_start = start + len(UNRELEASED)
    nxt = changelog.find("\n## [", body_start)
    end = len(changelog) if nxt < 0 else nxt + 1
    return body_start, end, changelog[body_start:end]


def has_entries(body: str) -> bool:
    """True when the Unreleased body holds at least one list item."""
    return any(line.lstrip().startswith(("-", "*")) for line in body.splitlines())
