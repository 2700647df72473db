"""YamlConfig: dict / YAML round trip, unknown keys, field type checks, lazy PyYAML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthfuse.shared.config import YamlConfig, check_value, validate_mapping
from synthfuse.shared.testing import modules_imported_by, run_python


@dataclass
class KFAC(YamlConfig):
    enabled: bool = False
    damping: float = 1e-3


@dataclass
class Optim(YamlConfig):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.98)
    window: tuple[int, float] = (4, 0.5)
    kfac: KFAC = field(default_factory=KFAC)


@dataclass
class Plain:
    """A dataclass that is not a YamlConfig, nested in one."""

    size: int = 2


@dataclass
class Run(YamlConfig):
    steps: int = 10
    out_dir: str | None = None
    layers: list[int] | None = None
    extra: dict[str, float] = field(default_factory=dict)
    anything: Any = None
    optim: Optim = field(default_factory=Optim)
    plain: Plain = field(default_factory=Plain)
    ratio: int | float = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1:
            raise ValueError(f"Run.steps must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class Frozen(YamlConfig):
    rate: float = 1.0


def test_shared_config_dict_and_yaml_round_trip(tmp_path):
    run = Run(steps=3, layers=[2, 1], extra={"a": 0.5}, anything={"x": [1]},
              optim=Optim(name="sgd", betas=(0.5, 0.25), kfac=KFAC(True, 0.1)), plain=Plain(5), ratio=0.5)
    as_dict = run.to_dict()
    assert as_dict["optim"] == {"name": "sgd", "lr": 1e-3, "betas": [0.5, 0.25], "window": [4, 0.5],
                                "kfac": {"enabled": True, "damping": 0.1}}  # tuples -> lists, nested -> dicts
    assert Run.from_dict(as_dict) == run
    path = tmp_path / "sub" / "run.yaml"
    text = run.to_yaml(path)
    assert path.read_text(encoding="utf-8") == text and not list(path.parent.glob("*.tmp"))
    assert Run.from_yaml(path) == run and Run.from_yaml(str(path)) == run
    assert Run.from_yaml(text) == run  # YAML text (it has a newline)
    assert Run.from_dict(None) == Run() and Run.from_yaml("# nothing\n") == Run()
    assert Run.from_dict({"optim": None}).optim == Optim()  # an empty YAML section is the defaults


_FINITE = st.floats(allow_nan=False, allow_infinity=False)
_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(1, 2**62), out_dir=st.none() | _TEXT, layers=st.none() | st.lists(st.integers(), max_size=4),
       extra=st.dictionaries(_TEXT, _FINITE, max_size=3), lr=_FINITE, betas=st.lists(_FINITE, max_size=3),
       name=st.sampled_from(["adamw", "sgd"]), enabled=st.booleans(), ratio=st.integers() | _FINITE)
def test_shared_config_yaml_round_trip_property(steps, out_dir, layers, extra, lr, betas, name, enabled, ratio):
    run = Run(steps=steps, out_dir=out_dir, layers=layers, extra=extra, ratio=ratio,
              optim=Optim(name=name, lr=lr, betas=tuple(betas), kfac=KFAC(enabled=enabled)))
    back = Run.from_yaml(run.to_yaml())
    assert back == run and type(back.ratio) is type(run.ratio)


def test_shared_config_unknown_keys_name_key_class_and_valid_keys():
    with pytest.raises(ValueError, match=r"unknown Run key\(s\) \['stepz'\]; valid keys: \['steps', 'out_dir'"):
        Run.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match=r"unknown KFAC key\(s\) \['optim\.kfac\.dampin'\]; valid keys of "
                                         r"optim\.kfac: \['enabled', 'damping'\]"):
        Run.from_dict({"optim": {"kfac": {"dampin": 1.0}}})
    with pytest.raises(ValueError, match=r"unknown Plain key\(s\) \['plain\.sise'\]"):
        Run.from_dict({"plain": {"sise": 1}})
    with pytest.raises(ValueError, match=r"unknown Run key\(s\) \['a', 'b'\]"):
        Run.from_yaml("b: 1\na: 2\n")
    with pytest.raises(ValueError, match="Run must be a mapping of field: value, got list"):
        Run.from_dict([1, 2])
    with pytest.raises(ValueError, match="optim must be a mapping of Optim fields"):
        Run.from_dict({"optim": 3})


@pytest.mark.parametrize("values,message", [
    ({"steps": 1.5}, r"steps must be an integer, got 1\.5 \(Run\.steps\)"),
    ({"steps": True}, "steps must be an integer, got True"),
    ({"steps": "3"}, "steps must be an integer"),
    ({"out_dir": 3}, "out_dir must be a string or null, got 3"),
    ({"layers": [1, 2.5]}, r"layers\[1\] must be an integer, got 2\.5"),
    ({"layers": 4}, r"layers must be a list \(list\[int\]\) or null"),
    ({"extra": {"a": "x"}}, "extra.a must be a finite number"),
    ({"extra": [1]}, "extra must be a mapping"),
    ({"optim": {"lr": "fast"}}, r"optim\.lr must be a finite number, got 'fast' \(Optim\.lr\)"),
    ({"optim": {"lr": float("nan")}}, "optim.lr must be a finite number, got nan"),
    ({"optim": {"lr": math.inf}}, "optim.lr must be a finite number, got inf"),
    ({"optim": {"lr": "1e-3"}}, r"YAML reads '1e-3' as text; write 1\.0e-3"),
    ({"optim": {"name": "adam"}}, r"optim\.name must be one of \['adamw', 'sgd'\], got 'adam'"),
    ({"optim": {"betas": [0.9, "x"]}}, r"optim\.betas\[1\] must be a finite number"),
    ({"optim": {"window": [1, 2, 3]}}, r"optim\.window must be a list of 2 items"),
    ({"optim": {"window": [1.5, 2]}}, r"optim\.window\[0\] must be an integer"),
    ({"optim": {"kfac": {"enabled": 1}}}, "optim.kfac.enabled must be true or false, got 1"),
    ({"ratio": "x"}, "ratio must be int or float"),
    ({"steps": 0}, "Run.steps must be >= 1"),  # the subclass's own check runs after the type checks
])
def test_shared_config_wrong_types_are_named_by_their_path(values, message):
    with pytest.raises(ValueError, match=message):
        Run.from_dict(values)


def test_shared_config_coercions_and_direct_construction():
    run = Run.from_dict({"optim": {"lr": 1, "betas": [1, 0]}, "layers": (3, 1), "ratio": 2, "extra": {"a": 2}})
    assert run.optim.lr == 1.0 and isinstance(run.optim.lr, float)
    assert run.optim.betas == (1.0, 0.0) and isinstance(run.optim.betas, tuple)
    assert run.layers == [3, 1] and run.ratio == 2 and isinstance(run.ratio, int)
    assert run.extra == {"a": 2.0} and isinstance(run.extra["a"], float)
    # direct construction is checked and coerced too; a nested mapping is built into its dataclass
    assert Run(optim={"kfac": {"damping": 2}}).optim.kfac == KFAC(False, 2.0)
    assert Run(plain={"size": 3}).plain == Plain(3)
    with pytest.raises(ValueError, match=r"^Run\.steps must be an integer, got '3'$"):
        Run(steps="3")
    with pytest.raises(ValueError, match="Optim.betas must be a list"):
        Optim(betas=0.9)
    frozen = Frozen(rate=2)
    assert frozen.rate == 2.0 and isinstance(frozen.rate, float)
    assert Frozen.from_yaml(frozen.to_yaml()) == frozen


def test_shared_config_helpers_and_unsupported_annotations():
    assert check_value([1, 2], tuple[float, ...], "x") == (1.0, 2.0)
    assert check_value(None, int | None, "x") is None
    with pytest.raises(ValueError, match=r"^model\.d must be an integer, got 'a'$"):
        check_value("a", int, "model.d")
    assert validate_mapping(KFAC, {"damping": 1}, where="k") == {"damping": 1.0}
    with pytest.raises(ValueError, match=r"unknown KFAC key\(s\) \['k\.enabled'\]; valid keys of k: \['damping'\]"):
        validate_mapping(KFAC, {"enabled": True}, where="k", exclude=("enabled",))

    @dataclass
    class Odd(YamlConfig):
        when: set = field(default_factory=set)

    with pytest.raises(TypeError, match="Odd.when: synthfuse.shared.config cannot check the annotation"):
        Odd()


def test_shared_config_missing_file_and_lazy_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config file at"):
        Run.from_yaml(tmp_path / "nope.yaml")
    assert "yaml" not in modules_imported_by("import synthfuse.shared.config")
    proc = run_python(
        "import sys; sys.modules['yaml'] = None\n"
        "from dataclasses import dataclass\n"
        "from synthfuse.shared.config import YamlConfig\n"
        "@dataclass\nclass C(YamlConfig):\n    a: int = 1\n"
        "assert C.from_dict({'a': 2}).a == 2\n"
        "try:\n    C().to_yaml()\nexcept ImportError as e:\n    print(e)\n"
    )
    assert "pip install 'synthfuse-shared[yaml]'" in proc.stdout, proc.stdout + proc.stderr
