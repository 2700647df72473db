import subprocess
import sys

import pytest

import synthfuse
from synthfuse.shared import __version__, cli


def test_shared_namespace_package_has_no_init():
    # PEP 420: `synthfuse` must be a namespace so the five wheels can share it.
    assert getattr(synthfuse, "__file__", None) is None
    assert len(list(synthfuse.__path__)) >= 1


def test_shared_help_lists_installed_and_missing(capsys, monkeypatch):
    monkeypatch.setattr(cli, "installed_commands", lambda: {"acr": object()})
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "acr" in out
    assert "pip install synthfuse-koda" in out  # not installed in this fake world
    assert "pip install synthfuse-acr" not in out


def test_shared_missing_package_names_the_wheel(capsys, monkeypatch):
    monkeypatch.setattr(cli, "installed_commands", dict)
    assert cli.main(["synthe", "train"]) == 2
    err = capsys.readouterr().err
    assert "pip install synthfuse-synthe" in err


def test_shared_unknown_command(capsys, monkeypatch):
    monkeypatch.setattr(cli, "installed_commands", dict)
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_shared_console_script_version():
    proc = subprocess.run([sys.executable, "-m", "synthfuse.shared", "--version"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == f"synthfuse-shared {__version__}"


def test_shared_package_parser_dispatch(capsys):
    parser, sub = cli.package_parser("synthfuse x", "1.2.3", "demo parser")
    p = sub.add_parser("echo")
    p.add_argument("word")
    p.set_defaults(func=lambda a: print(a.word) or 7)
    assert cli.run_parser(parser, ["echo", "hi"]) == 7
    assert capsys.readouterr().out.strip() == "hi"
    assert cli.run_parser(parser, []) == 0  # bare command prints help
    with pytest.raises(SystemExit):
        cli.run_parser(parser, ["--version"])
    assert "synthfuse-x 1.2.3" in capsys.readouterr().out
