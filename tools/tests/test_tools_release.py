import datetime as dt


def test_tools_release_bumps_only_its_package(monorepo):
    before = monorepo.snapshot()
    proc = monorepo.tool("release", "acr", "0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "acr-v0.1.0"
    after = monorepo.snapshot()
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"packages/acr/CHANGELOG.md", "packages/acr/src/synthfuse/acr/__about__.py"}
    assert after["packages/acr/src/synthfuse/acr/__about__.py"] == '__version__ = "0.1.0"\n'
    today = dt.date.today().isoformat()
    assert f"## [Unreleased]\n\n## [0.1.0] - {today}\n\n### Added\n- first thing\n" in after["packages/acr/CHANGELOG.md"]


def test_tools_release_refuses_non_increasing_version(monorepo):
    proc = monorepo.tool("release", "koda", "0.0.9")
    assert proc.returncode != 0 and "must be greater" in proc.stderr
    assert monorepo.tool("release", "koda", "0.1.0.dev0").returncode != 0


def test_tools_release_refuses_empty_unreleased_and_dirty_tree(monorepo):
    assert monorepo.tool("release", "synthe", "0.1.0").returncode == 0
    monorepo.commit("release synthe")
    proc = monorepo.tool("release", "synthe", "0.2.0")
    assert proc.returncode != 0 and "empty Unreleased" in proc.stderr
    (monorepo.root / "stray.txt").write_text("x")
    proc = monorepo.tool("release", "koda", "0.1.0")
    assert proc.returncode != 0 and "dirty" in proc.stderr
    assert "0.1.0.dev0" in monorepo.path("koda", "src/synthfuse/koda/__about__.py").read_text()


def test_tools_release_then_changelog_check_is_clean(monorepo):
    assert monorepo.tool("release", "retrain", "0.1.0").returncode == 0
    monorepo.commit("release retrain")
    monorepo.git("tag", "retrain-v0.1.0")
    proc = monorepo.tool("check_changelogs")
    assert proc.returncode == 0, proc.stderr
