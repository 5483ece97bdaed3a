from pathlib import Path

import pytest

from fedleak.core.errors import FedleakError
from fedleak.scenario import load_scenario, parse_scenario
from fedleak.scenario.preflight import check_runnable

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_scenarios_validate_and_pass_the_preflight():
    paths = sorted((ROOT / "scenarios").glob("*.toml"))
    assert ROOT / "scenarios" / "quickstart.toml" in paths and len(paths) >= 7
    for path in paths:
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        check_runnable(scenario)  # data, model, shards: what `fedleak run` checks before it starts


def test_override_sets_nested_values_and_lists():
    scenario = load_scenario(ROOT / "scenarios" / "quickstart.toml",
                             ["training.lr=0.5", "attacks.0.iterations=7", "dataset.name=mnist"])
    assert scenario.training.lr == 0.5
    assert scenario.attacks[0].config.iterations == 7
    assert scenario.dataset.name == "mnist"


def test_resolved_scenario_round_trips_through_toml(tmp_path):
    scenario = load_scenario(ROOT / "scenarios" / "quickstart.toml")
    (tmp_path / "s.toml").write_text(scenario.to_toml())
    assert load_scenario(tmp_path / "s.toml") == scenario


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"dataset": {"name": "imagenet"}}, "dataset.name: unknown dataset 'imagenet'; allowed: cifar10"),
        ({"model": {"name": "vgg"}}, "model.name: unknown model 'vgg'; allowed: convnet, lenet, mlp"),
        ({"attacks": [{"name": "magic"}]}, "attacks[0].name: unknown attack 'magic'; allowed: analytic, dlg, grnn, idlg, inverting"),
        ({"training": {"lr": "fast"}}, "training.lr: Input should be a valid number"),
        ({"training": {"batch_size": 0}}, "training.batch_size: Input should be greater than or equal to 1"),
        ({"attacks": [{"name": "dlg", "iterations": -1}]}, "attacks[0].iterations: Input should be greater than or equal to 1"),
        ({"attacks": [{"name": "inverting", "restarts": 0}]}, "attacks[0].restarts: Input should be greater than or equal to 1"),
        ({"attacks": [{"name": "grnn", "labels": "guess"}]}, "attacks[0].labels: Input should be 'optimize' or 'infer'"),
        ({"partition": {"name": "zipf"}}, "partition.name: unknown partitioner 'zipf'; allowed: dirichlet, iid"),
        ({"federation": {"roundz": 3}}, "federation.roundz: Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_the_key_and_allowed_values(table, expected):
    with pytest.raises(FedleakError) as error:
        parse_scenario(table, source="s.toml")
    assert str(error.value).startswith(f"s.toml: {expected}")
    assert "\n" not in str(error.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(FedleakError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.toml")
    (tmp_path / "s.toml").write_text("")
    with pytest.raises(FedleakError, match="--set expects key=value"):
        load_scenario(tmp_path / "s.toml", ["training.lr"])
    with pytest.raises(FedleakError, match="invalid TOML"):
        (tmp_path / "bad.toml").write_text("name = = 3")
        load_scenario(tmp_path / "bad.toml")
