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


_EXIT_PROBE = """
import atexit, sys
from synthfuse.shared.cli import torchrun_exit
atexit.register(lambda: print("finalized", flush=True))
sys.stdout.write("buffered output")  # no newline, no flush: torchrun_exit must flush it
raise SystemExit(torchrun_exit(3))
"""


@pytest.mark.parametrize("worker", [True, False])
def test_shared_torchrun_exit_skips_finalization_only_in_torchrun_workers(worker, monkeypatch):
    for key in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    if worker:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
        monkeypatch.setenv("WORLD_SIZE", "2")
    proc = subprocess.run([sys.executable, "-c", _EXIT_PROBE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stdout.startswith("buffered output")
    assert ("finalized" in proc.stdout) is not worker  # atexit handlers run only outside workers


def test_shared_torchrun_exit_returns_the_code_in_a_one_process_job(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cli.torchrun_exit(4) == 4
