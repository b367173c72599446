"""``dhcbench bench`` and the GPU check, at toy sizes (no timing is asserted).

- the model floor steps the method's own image networks (the same objects) and changes
  their parameters; multi-output networks give their main logits; SS-Net's heads are left
  out;
- the step report has the requested rounds and consistent fields;
- the data, infer and eval parts run and find identical patches, labels and values;
- ``gpu_check --reduced`` runs on the CPU and writes its JSON and Markdown with every field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dhcbench.benchmark import bench_report
from dhcbench.benchmark.bench import ModelFloor, Spread, build_trainer, main_logits, maps_images
from dhcbench.benchmark.bench import time_method as bench_time_method
from dhcbench.benchmark.bench_eval import bench_eval
from dhcbench.benchmark.bench_parts import _top2_gap, bench_data, bench_infer, inference_configs
from dhcbench.benchmark.planning import plan_run
from dhcbench.errors import UserError
from dhcbench.evaluation import inference
from dhcbench.evaluation.inference import InferenceOptions

TINY = [{"data": {"options": {"volume_size": [16, 32, 32], "num_cases": 8},
                  "patch_size": [16, 16, 16]}},
        {"train": {"base_filters": 2, "threads": 1}}]


@pytest.fixture(autouse=True)
def _one_thread():
    # On a shared 2-core machine one thread per process is the stable setting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("bench-data"))


def _plan(method: str, root: str, tmp: Path):  # noqa: ANN202
    layers = [*TINY, {"data": {"root": root}, "tracking": {"out_dir": str(tmp)}}]
    return plan_run(method, "phantom", 0.2, [0], layers)


def test_floor_steps_the_methods_own_networks(tiny_root: str, tmp_path: Path) -> None:
    trainer = build_trainer(_plan("dhc", tiny_root, tmp_path))
    floor = ModelFloor(trainer)
    nets = trainer.method.optimized_networks()
    assert set(floor.networks) == set(nets) == {"a", "b"}
    assert all(floor.networks[k] is nets[k] for k in nets)
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in nets.items()}
    loss = floor.step()
    assert loss.ndim == 0 and math.isfinite(float(loss))
    for k, net in nets.items():
        weights = [(b, p) for b, p in zip(before[k], net.parameters(), strict=True)
                   if p.ndim > 1]  # convolution kernels (a bias before BatchNorm may not move)
        assert weights and all(not torch.equal(b, p) for b, p in weights), k
    group = floor.optimizers[0].param_groups[0]
    spec = trainer.spec
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        spec.lr, spec.momentum, spec.weight_decay, spec.nesterov)


def test_main_logits_and_networks_without_forward() -> None:
    from dhcbench.methods.networks import VNet
    from dhcbench.methods.ssnet import SSNetHeads

    z = torch.zeros(1, 3, 2, 2, 2)
    assert main_logits(z) is z
    assert main_logits([z, z + 1]) is z and main_logits((z, z + 1, z + 2)) is z
    assert maps_images(VNet(1, 3, 2)) and not maps_images(SSNetHeads(2, 3))


def test_ratio_report_has_the_rounds(tiny_root: str, tmp_path: Path) -> None:
    r = bench_time_method(_plan("cps", tiny_root, tmp_path), steps=1, warmup=0, rounds=5)
    assert r.method == "cps" and r.rounds == 5 and r.steps_per_round == 1
    assert r.ratio is not None and r.ratio.rounds == 5
    assert 0 < r.ratio.low <= r.ratio.q1 <= r.ratio.median <= r.ratio.q3 <= r.ratio.high
    assert 0 < r.min_s <= r.median_s and r.floor_median_s > 0 and r.peak_mb > 0
    row = r.to_json()
    assert row["ratio"]["rounds"] == 5 and json.dumps(row)
    assert "×" in bench_report.step_line(r)


def test_spread_of_rounds() -> None:
    s = Spread.of([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (s.median, s.low, s.high, s.q1, s.q3, s.rounds) == (3.0, 1.0, 10.0, 2.0, 4.0, 5)
    assert s.text() == "×3.00 (1.00–10.00)"


def test_data_part_identical_patch() -> None:
    r = bench_data((16, 32, 32), (16, 16, 16), rounds=2, per_round=2)
    assert r.identical and r.rounds == 2 and r.patch_ms > 0 and r.reread_ms > 0
    assert r.ratio.rounds == 2


def test_infer_part_identical_labels() -> None:
    r = bench_infer((16, 32, 32), (16, 16, 16), filters=2, rounds=1)
    names = [c.name for c in r.configs]
    assert names[0] == "default" and len(names) == len(set(names)) >= 5
    assert all(c.identical_labels and c.differing_voxels == 0 for c in r.configs)
    assert r.configs[0].speedup.median == 1.0 and json.dumps(r.to_json())
    default = inference.default_inference_options(torch.device("cpu"))
    assert all(InferenceOptions(**c.options) != default for c in r.configs[1:])
    assert all(c.tie_gap == 0.0 for c in r.configs)


def test_inference_configs_leave_out_the_default_itself() -> None:
    configs = inference_configs(torch.device("cpu"))
    default = inference.default_inference_options(torch.device("cpu"))
    assert configs[0] == ("default", None)
    assert [o for _, o in configs[1:] if o == default] == []
    assert {"plain", "window batch 1", "window batch 8"} <= {n for n, _ in configs}


def test_top2_gap_by_hand() -> None:
    # (K=3, D=1, H=1, W=3): voxel 0 gap 0.5-0.3=0.2, voxel 1 a tie (gap 0), voxel 2 gap 0.6.
    probs = torch.tensor([[0.5, 0.4, 0.8], [0.3, 0.4, 0.2], [0.2, 0.2, 0.0]]).reshape(3, 1, 1, 3)
    assert _top2_gap(probs, np.array([[[False, True, False]]])) == 0.0
    assert _top2_gap(probs, np.array([[[True, True, False]]])) == pytest.approx(0.2)
    assert _top2_gap(probs, np.ones((1, 1, 3), bool)) == pytest.approx(0.6)
    assert _top2_gap(probs, np.zeros((1, 1, 3), bool)) == 0.0


def test_eval_part_identical_values() -> None:
    r = bench_eval((16, 32, 32), rounds=1)
    assert r.identical and r.max_abs_diff < 1e-9 and r.values == 13 * 5
    assert r.ours_ms > 0 and r.medpy_ms > 0


def test_parse_shape_and_json(tmp_path: Path) -> None:
    assert bench_report.parse_shape("amos", "--grid") == (80, 160, 160)
    assert bench_report.parse_shape("16,32,32", "--grid") == (16, 32, 32)
    with pytest.raises(UserError, match="--grid"):
        bench_report.parse_shape("16,32", "--grid")
    results, table = bench_report.run_part("eval", ["16,32,32"], None, 2, 1, "cpu")
    out = tmp_path / "sub" / "eval.json"
    bench_report.write_json(out, "eval", results)
    doc = json.loads(out.read_text())
    assert doc["part"] == "eval" and doc["results"][0]["identical"] is True
    assert {"processor", "cpus", "torch_threads", "torch"} <= set(doc["machine"])
    assert table.row_count == 1


def test_gpu_check_reduced_writes_every_field(tmp_path: Path) -> None:
    from dhcbench.benchmark import gpu_check

    doc = gpu_check.main(["--reduced", "--out", str(tmp_path / "gc"), "--max-seconds", "60"])
    saved = json.loads((tmp_path / "gc" / "gpu-check.json").read_text())
    assert saved["config"]["reduced"] is True and saved["device"] == "cpu"
    (run,) = saved["runs"]
    for key in ("filters", "steps", "first_step_s", "step_ms", "step_ms_p90", "peak_mb",
                "wait_ms", "wait_ms_p95", "wait_share", "produce_ms", "sync_fetch_ms",
                "loader_headroom", "inference", "torch_compile"):
        assert run[key] is not None, key
    assert run["steps"] >= 1 and run["inference"]["s_per_volume"] > 0
    assert "skipped" in run["torch_compile"]
    amp = saved["amp_agreement"]
    assert amp["steps"] == 3 and len(amp["fp32"]) == len(amp["amp"]) == 3
    assert amp["max_rel_diff"] == 0.0  # AMP is inactive on a CPU: the same computation
    md = (tmp_path / "gc" / "gpu-check.md").read_text()
    for text in ("training step", "peak memory", "waits for its batch", "inference",
                 "torch.compile", "AMP vs fp32"):
        assert text in md, text
    assert doc["elapsed_s"] > 0


def test_cli_parts_and_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dhcbench.cli import app

    out = tmp_path / "eval.json"
    res = CliRunner().invoke(app, ["bench", "--part", "eval", "--grid", "16,32,32",
                                   "--rounds", "1", "--threads", "1", "--json", str(out)],
                             env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "medpy/ours" in res.output and json.loads(out.read_text())["part"] == "eval"
    bad = CliRunner().invoke(app, ["bench", "--part", "nope"])
    assert bad.exit_code != 0 and "--part" in bad.output
    bad = CliRunner().invoke(app, ["bench", "--rounds", "0"])
    assert bad.exit_code != 0 and "--rounds" in bad.output
