"""SyntheConfig: presets (parameter counts), validation, YAML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synthfuse.synthe import Synthe, SyntheConfig

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize(
    "preset,millions", [("tiny", 16), ("small_60m", 74), ("medium_125m", 216), ("large_350m", 528)]
)
def test_preset_parameter_counts(preset, millions):
    config = getattr(SyntheConfig, preset)()
    assert config.vocab_size == 32000
    model = Synthe(config, device=torch.device("meta"))  # no memory allocated
    count = model.num_parameters()
    assert abs(count / 1e6 - millions) <= 0.05 * millions, count


def test_yaml_round_trip(tmp_path):
    config = SyntheConfig.tiny(vocab_size=1000, exit_threshold=0.8)
    path = tmp_path / "c.yaml"
    config.to_yaml(path)
    assert SyntheConfig.from_yaml(path) == config
    assert SyntheConfig.from_yaml(config.to_yaml()) == config


@pytest.mark.parametrize("preset", ["tiny", "small_60m", "medium_125m", "large_350m"])
def test_shipped_yaml_files_are_the_presets(preset):
    assert SyntheConfig.from_yaml(CONFIGS / f"synthe_{preset}.yaml") == getattr(SyntheConfig, preset)()


def test_unknown_keys_and_bad_values_are_rejected():
    with pytest.raises(ValueError, match=r"unknown SyntheConfig key\(s\) \['d_modle'\]"):
        SyntheConfig.from_dict({"d_modle": 64})
    with pytest.raises(ValueError, match="unknown"):
        SyntheConfig.from_yaml("d_model: 64\nwarmup: 10\n")
    with pytest.raises(ValueError, match="d_model must be"):
        SyntheConfig(d_model="64")
    with pytest.raises(ValueError, match="divisible"):
        SyntheConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="power of two"):
        SyntheConfig(chunk_size=48)
    with pytest.raises(ValueError, match="exit_layers"):
        SyntheConfig(n_layers=4, exit_layers=[3])
    with pytest.raises(ValueError, match="exit_layers"):
        SyntheConfig(n_layers=4, exit_layers=[0])  # not after the hub
    with pytest.raises(ValueError, match="probe_layers"):
        SyntheConfig(n_layers=4, probe_layers=[4])
    with pytest.raises(ValueError, match=">= 1"):
        SyntheConfig(n_layers=0)
    with pytest.raises(ValueError, match="delta_dt_range"):
        SyntheConfig(delta_dt_range=(1e-3, 1e-4))


def test_defaults_are_resolved_explicitly():
    config = SyntheConfig(n_layers=8, d_model=64, n_heads=4)
    assert config.kalman_dim == 64 and config.hub_dim == 16
    assert config.probe_layers == [1, 3, 5, 7] and config.exit_layers == [3, 5]
    assert SyntheConfig(exit_threshold=1).exit_threshold == 1.0 and isinstance(SyntheConfig(exit_threshold=1).exit_threshold, float)
