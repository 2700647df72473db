import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent
CHANGELOG = "# Changelog\n\n## [Unreleased]\n\n### Added\n- first thing\n"


class Monorepo:
    """A miniature synthfuse monorepo in a temporary git repository, and the tools to drive it."""

    def __init__(self, root: Path):
        sys.path.insert(0, str(TOOLS))
        from _repo import PACKAGES

        self.root, self.packages = root, dict(PACKAGES)
        for package, folder in PACKAGES.items():
            src = root / folder / "src" / "synthfuse" / package
            src.mkdir(parents=True)
            (src / "__about__.py").write_text('__version__ = "0.1.0.dev0"\n')
            (root / folder / "CHANGELOG.md").write_text(CHANGELOG)
        self.git("init", "-q", "-b", "main")
        self.commit("init")

    def git(self, *args: str) -> str:
        cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
        return subprocess.run(cmd, cwd=self.root, check=True, capture_output=True, text=True).stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def tool(self, name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(TOOLS / name), *args, "--root", str(self.root)],
                              capture_output=True, text=True)

    def path(self, package: str, rel: str) -> Path:
        return self.root / self.packages[package] / rel

    def snapshot(self) -> dict[str, str]:
        return {p.relative_to(self.root).as_posix(): p.read_text() for p in self.root.rglob("*")
                if p.is_file() and ".git" not in p.parts}


@pytest.fixture
def monorepo(tmp_path):
    return Monorepo(tmp_path)
