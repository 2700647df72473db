def test_tools_check_changelogs_flags_change_without_entry(monorepo):
    # Release koda (empties its Unreleased), tag it, then change a koda file without an entry.
    assert monorepo.tool("release", "koda", "0.1.0").returncode == 0
    monorepo.commit("release")
    monorepo.git("tag", "koda-v0.1.0")
    assert monorepo.tool("check_changelogs").returncode == 0
    monorepo.path("koda", "src/synthfuse/koda/new.py").write_text("x = 1\n")
    proc = monorepo.tool("check_changelogs")
    assert proc.returncode == 1
    assert "koda:" in proc.stderr and "acr" not in proc.stderr
    log = monorepo.path("koda", "CHANGELOG.md")
    log.write_text(log.read_text().replace("## [Unreleased]\n", "## [Unreleased]\n\n### Added\n- new.py\n", 1))
    assert monorepo.tool("check_changelogs").returncode == 0


def test_tools_check_changelogs_untagged_package_uses_first_commit(monorepo):
    monorepo.path("shared", "CHANGELOG.md").write_text("# Changelog\n\n## [Unreleased]\n")
    monorepo.commit("empty the shared changelog")
    proc = monorepo.tool("check_changelogs")
    assert proc.returncode == 1 and "shared:" in proc.stderr
