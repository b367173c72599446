"""Run-spec layering, validation and identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from dhcbench.benchmark.planning import resolve_specs, seed_list
from dhcbench.benchmark.spec import (
    RunSpec,
    build_spec,
    load_config_file,
    parse_assignment,
    spec_key,
    write_config_file,
)
from dhcbench.errors import UserError


def test_defaults_follow_the_reference() -> None:
    spec = RunSpec()
    t = spec.train
    assert (t.lr, t.momentum, t.weight_decay, t.nesterov) == (0.03, 0.9, 3e-5, True)
    assert (t.unsup_weight, t.batch_labeled, t.batch_unlabeled, t.eval_interval) == (0.1, 2, 2, 10)
    assert (t.poly_power, t.base_filters, t.patience, t.dropout) == (0.9, 32, 100, 0.5)
    assert spec.data.flip is False


def test_layers_override_in_order_and_phantom_preset_applies() -> None:
    (spec,) = resolve_specs("dhc", "phantom", 0.2, [0],
                            [{"train": {"lr": 0.01}}, parse_assignment("train.lr=0.02")])
    assert spec.train.lr == 0.02
    # the phantom preset: 16 filters, 25 epochs of 18 iterations, poly(0.3), no early stop
    assert (spec.train.base_filters, spec.train.epochs, spec.train.iters_per_epoch) == (16, 24, 18)
    assert (spec.train.poly_power, spec.train.dropout) == (0.3, 0.2)
    assert spec.train.patience is None and spec.data.patch_size is None
    assert spec.method.name == "dhc" and spec.data.ratio == 0.2


def test_parse_assignment_reads_yaml_values() -> None:
    assert parse_assignment("data.patch_size=[16,32,32]") == {"data": {"patch_size": [16, 32, 32]}}
    assert parse_assignment("train.patience=null") == {"train": {"patience": None}}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_assignment("train.lr")


def test_unknown_and_badly_typed_settings_fail() -> None:
    with pytest.raises(UserError, match="unknown setting train.learning_rate"):
        build_spec([{"train": {"learning_rate": 1}}])
    with pytest.raises(UserError, match="unknown setting bogus"):
        build_spec([{"bogus": 1}])
    with pytest.raises(UserError, match="train.epochs"):
        build_spec([{"train": {"epochs": 1.5}}])
    with pytest.raises(UserError, match="multiple of 16"):
        build_spec([{"data": {"patch_size": [20, 32, 32]}}])
    with pytest.raises(UserError, match="fraction"):
        build_spec([{"data": {"ratio": 20}}])


def test_tuple_and_bool_coercion() -> None:
    spec = build_spec([{"data": {"patch_size": "16x32x32", "flip": "true"}}])
    assert spec.data.patch_size == (16, 32, 32) and spec.data.flip is True


def test_spec_key_ignores_tracking_and_seed_but_not_settings() -> None:
    a = build_spec([{"seed": 0}])
    b = build_spec([{"seed": 1, "tracking": {"experiment": "other"}}])
    c = build_spec([{"train": {"lr": 0.01}}])
    assert spec_key(a) == spec_key(b)
    assert spec_key(a, with_seed=True) != spec_key(b, with_seed=True)
    assert spec_key(a) != spec_key(c)


def test_config_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "best.yaml"
    write_config_file(path, {"method": {"kwargs": {"beta": 0.95}}, "train": {"lr": 0.02}})
    spec = build_spec([load_config_file(path)])
    assert spec.method.kwargs == {"beta": 0.95} and spec.train.lr == 0.02
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML"):
        load_config_file(bad)


def test_seed_list_uses_the_paper_seeds_first() -> None:
    assert seed_list(3, None) == [0, 1, 666]
    assert seed_list(5, None) == [0, 1, 666, 2, 3]
    assert seed_list(1, [7, 8]) == [7, 8]
    with pytest.raises(UserError):
        seed_list(0, None)
    with pytest.raises(UserError, match="repeat"):
        seed_list(1, [1, 1])


def test_method_and_dataset_cannot_be_switched_by_a_layer() -> None:
    with pytest.raises(UserError, match="come from --method"):
        resolve_specs("dhc", "phantom", 0.2, [0], [{"method": {"name": "cps"}}])
