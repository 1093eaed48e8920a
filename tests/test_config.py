"""Config loading: files, overrides, validation with the list of valid keys."""

from dataclasses import dataclass, field

import pytest

from mtcompare.config import build_config, config_from_dict, config_to_dict
from mtcompare.errors import MtcError


@dataclass
class Weights:
    lm: float = 0.5
    distortion: float = 0.3


@dataclass
class Example:
    order: int = 3
    name: str = "default"
    limit: int | None = 20
    verbose: bool = False
    weights: Weights = field(default_factory=Weights)


def test_defaults_without_file_or_overrides():
    assert build_config(Example) == Example()


def test_yaml_file_then_overrides_then_explicit_values(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("order: 5\nweights:\n  lm: 0.7\nname: file\n", encoding="utf-8")
    config = build_config(Example, path, ["weights.distortion=0.1", "name=cli"], order=4)
    assert config.order == 4
    assert config.name == "cli"
    assert config.weights.lm == 0.7
    assert config.weights.distortion == 0.1


def test_toml_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("limit = 7\n[weights]\nlm = 1\n", encoding="utf-8")
    config = build_config(Example, path)
    assert config.limit == 7
    assert config.weights.lm == 1.0


def test_none_for_optional_and_explicit_none_means_not_given():
    assert build_config(Example, overrides=["limit=null"]).limit is None
    assert build_config(Example, order=None).order == 3


def test_unknown_key_lists_valid_keys():
    with pytest.raises(MtcError, match="valid: limit, name, order, verbose, weights"):
        build_config(Example, overrides=["ordr=4"])


def test_wrong_type_is_rejected():
    with pytest.raises(MtcError, match="'order': expected int"):
        build_config(Example, overrides=["order=high"])
    with pytest.raises(MtcError, match="not key=value"):
        build_config(Example, overrides=["order"])


def test_broken_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("order: [1,\n", encoding="utf-8")
    with pytest.raises(MtcError, match="bad.yaml"):
        build_config(Example, path)


def test_dict_round_trip():
    config = build_config(Example, overrides=["weights.lm=0.9", "verbose=true"])
    assert config_from_dict(Example, config_to_dict(config)) == config


def test_errors_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("ordr: 4\n", encoding="utf-8")
    with pytest.raises(MtcError, match=r"typo.yaml: unknown setting 'ordr'"):
        build_config(Example, path)
