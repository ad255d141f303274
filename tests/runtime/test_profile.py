"""lite-deploy profile on the tiny ONNX / OpenVINO / TFLite detectors: statistics, per-layer times, GFLOPs."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from lite_deploy.cli import main
from lite_deploy.runtime import load_runtime
from lite_deploy.runtime.base import LayerTime, mean_layer_times
from lite_deploy.runtime.profiling.flops import onnx_gflops, openvino_gflops
from lite_deploy.runtime.profiling.latency import LatencyStats
from lite_deploy.runtime.profiling.machine import device_facts, peak_rss_mb, sgemm_peak_gflops
from lite_deploy.runtime.profiling.profile import FRAME_SHAPE, plot_histogram, profile, synthetic_frame

# the tiny detector of conftest.py at 64x64: three 3x3 stride-2 convolutions (3->8->16->16) and a 1x1 head (16->7)
TINY_MACS = 8 * 32 * 32 * 3 * 9 + 16 * 16 * 16 * 8 * 9 + 16 * 8 * 8 * 16 * 9 + 7 * 8 * 8 * 16


def _ort_traces() -> list:
    return list(Path(tempfile.gettempdir()).glob(f"lite_deploy_ort_{os.getpid()}*"))


@pytest.mark.parametrize("target", ["onnx", "openvino", "tflite"])
def test_profile_statistics_layers_and_gflops(tiny_artifacts: Dict[str, Path], target: str) -> None:
    result = profile(tiny_artifacts[target], runs=12, warmup=2, layer_runs=3, threads=1, peak=False, facts=False)
    lat = result.latency
    assert lat.min <= lat.p50 <= lat.p90 <= lat.p99 <= lat.max and len(result.samples_ms) == 12
    assert lat.min == min(result.samples_ms) and lat.max == max(result.samples_ms)
    for stage in result.stages.values():
        assert 0 <= stage.min <= stage.p50 <= stage.p99 <= stage.max
    stage_sum = sum(s.mean for s in result.stages.values())
    assert stage_sum <= lat.mean  # the stages are timed inside each timed call
    assert lat.mean - stage_sum < 0.25 * lat.mean + 0.5  # ... and make up nearly all of it
    assert result.fps == pytest.approx(1e3 / lat.mean)
    assert result.input_shape == [1, 3, 64, 64]
    assert result.peak_rss_mb > 0
    # every format counts the same convolutions (the TFLite model through the tiny.onnx beside it)
    assert result.gflops == pytest.approx(2 * TINY_MACS / 1e9)
    assert result.achieved_gflops == pytest.approx(result.gflops / (result.stages["infer"].mean / 1e3))
    if target == "tflite":
        assert result.layers == [] and "has no per-layer profiler" in result.layer_note
        assert result.gflops_source == "ONNX graph tiny.onnx"
        return
    assert result.layer_note == "" and 4 <= len(result.layers) <= 10
    assert [t.ms for t in result.layers] == sorted((t.ms for t in result.layers), reverse=True)
    assert any("conv" in t.op_type.lower() for t in result.layers)
    assert 0 < sum(result.share(t) for t in result.layers) <= 1 + 1e-9
    assert not _ort_traces()  # ONNX Runtime's trace file was read and removed


def test_batch_larger_than_the_model_batch(tiny_artifacts: Dict[str, Path]) -> None:
    result = profile(tiny_artifacts["onnx"], runs=3, warmup=1, batch=3, layers=False, peak=False, facts=False)
    assert result.input_shape == [1, 3, 64, 64] and result.batch == 3
    assert result.fps == pytest.approx(3e3 / result.latency.mean)
    assert result.layer_note == "not measured"


def test_cli_writes_json_and_histogram(tiny_artifacts: Dict[str, Path], tmp_path: Path, capsys) -> None:
    json_path, png = tmp_path / "out" / "profile.json", tmp_path / "out" / "latency.png"
    assert main(["profile", str(tiny_artifacts["openvino"]), "--runs", "8", "--warmup", "1", "--layer-runs", "2",
                 "--threads", "1", "--json", "--plots", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "end-to-end" in out and "top " in out and "GFLOP/s" in out and "device: cpu" in out
    data = json.loads(json_path.read_text())
    assert data["runs"] == 8 and len(data["samples_ms"]) == 8 and data["threads"] == 1
    assert set(data["stages"]) == {"pre", "infer", "post"} and data["latency"]["p50"] > 0
    assert data["layers"] and {"name", "op_type", "ms", "share"} <= set(data["layers"][0])
    assert data["sgemm_gflops"] > 0 and data["device"]["cores"] == str(os.cpu_count())
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_refuses_bad_arguments(tmp_path: Path, capsys) -> None:
    assert main(["profile", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "m.onnx").write_bytes(b"")  # the number is refused before the file is read
    assert main(["profile", str(tmp_path / "m.onnx"), "--runs", "0"]) == 2
    assert "--runs" in capsys.readouterr().err


def test_layer_times_needs_profiling(tiny_artifacts: Dict[str, Path]) -> None:
    with load_runtime(tiny_artifacts["onnx"]) as runtime:
        with pytest.raises(ValueError, match="profiling=True"):
            runtime.layer_times()
    with load_runtime(tiny_artifacts["openvino"], profiling=True) as runtime:
        with pytest.raises(ValueError, match="profiling=True and run it"):
            runtime.layer_times()  # nothing run yet
    with load_runtime(tiny_artifacts["tflite"]) as runtime:
        with pytest.raises(NotImplementedError, match="no per-layer profiler"):
            runtime.layer_times()
    # a profiling ONNX Runtime session closed unread leaves no trace file behind
    with load_runtime(tiny_artifacts["onnx"], profiling=True) as runtime:
        runtime.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert not _ort_traces()


def test_mean_layer_times_leaves_out_the_first_run() -> None:
    runs = [
        [LayerTime("conv", "Conv", 50.0), LayerTime("add", "Add", 9.0)],  # warm-up: allocations
        [LayerTime("conv", "Conv", 2.0), LayerTime("add", "Add", 1.0)],
        [LayerTime("conv", "Conv", 4.0), LayerTime("add", "Add", 1.0)],
    ]
    assert mean_layer_times(runs) == [LayerTime("conv", "Conv", 3.0), LayerTime("add", "Add", 1.0)]
    assert mean_layer_times(runs[:1]) == [LayerTime("conv", "Conv", 50.0), LayerTime("add", "Add", 9.0)]


def test_graph_gflops_agree(tiny_artifacts: Dict[str, Path]) -> None:
    import openvino as ov

    assert onnx_gflops(tiny_artifacts["onnx"]) == pytest.approx(2 * TINY_MACS / 1e9)
    assert openvino_gflops(ov.Core().read_model(str(tiny_artifacts["openvino"]))) == pytest.approx(2 * TINY_MACS / 1e9)


def test_latency_stats_and_machine_facts() -> None:
    stats = LatencyStats.of([4.0, 1.0, 3.0, 2.0])
    assert (stats.mean, stats.p50, stats.min, stats.max) == (2.5, 2.5, 1.0, 4.0)
    assert stats.p50 <= stats.p90 <= stats.p99 <= stats.max
    with pytest.raises(ValueError, match="no latency samples"):
        LatencyStats.of([])
    facts = device_facts()
    assert facts["cores"] == str(os.cpu_count()) and facts["cpu"]
    assert sgemm_peak_gflops(n=64, seconds=0.01) > 0 and peak_rss_mb() > 0
    frame = synthetic_frame()
    assert frame.shape == FRAME_SHAPE + (3,) and frame.dtype == np.uint8 and frame.std() > 10
    assert np.array_equal(frame, synthetic_frame())


def test_profile_refuses_bad_counts(tiny_artifacts: Dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="runs >= 1"):
        profile(tiny_artifacts["onnx"], runs=0)


def test_histogram(tiny_artifacts: Dict[str, Path], tmp_path: Path) -> None:
    result = profile(tiny_artifacts["onnx"], runs=5, warmup=0, layers=False, peak=False, facts=False)
    assert plot_histogram(result, tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_tensorrt_layer_profiler_on_a_stand_in() -> None:
    """TensorRT's documented IProfiler callback (report_layer_time(layer_name, ms), once per layer per execution)."""
    import types

    from lite_deploy.runtime.backends.tensorrt import engine

    class IProfiler:
        def __init__(self) -> None:
            pass

    profiler = engine._layer_profiler(types.SimpleNamespace(IProfiler=IProfiler))
    for ms in (9.0, 1.0, 3.0):  # warm-up, then two timed executions
        profiler.report_layer_time("conv1", ms)
        profiler.report_layer_time("head", ms / 2)
        profiler.end_run()
    runtime = object.__new__(engine.TensorRTRuntime)
    runtime.path, runtime._profiler = Path("model.engine"), profiler
    assert runtime.layer_times() == [LayerTime("conv1", "", 2.0), LayerTime("head", "", 1.0)]
    runtime._profiler = None
    with pytest.raises(ValueError, match="profiling=True"):
        runtime.layer_times()


def test_profile_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import lite_deploy.runtime.profiling.profile, lite_deploy.runtime.profiling.flops\n"
        "import lite_deploy.runtime.profiling.machine\n"
        "import lite_deploy.commands.profile\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'lite_deploy.models')))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_classifier_checkpoint_is_timed_at_imgsz(tmp_path: Path) -> None:
    from lite_deploy.models.backbones import build_classifier
    from lite_deploy.models.checkpoint import save_checkpoint

    weights = save_checkpoint(build_classifier("shufflenetv2_x0_5", 6).eval(), tmp_path / "cls.pt", imgsz=64)
    result = profile(weights, imgsz=96, runs=2, warmup=0, layers=False, peak=False, facts=False)
    assert result.input_shape[2:] == [96, 96]


def test_matmul_peak_is_measured_once_per_machine(tmp_path: Path, monkeypatch) -> None:
    from lite_deploy.runtime.profiling import machine

    rates = iter([50.0, 10.0, 90.0, 60.0, 55.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    calls = []
    monkeypatch.setattr(machine, "sgemm_peak_gflops", lambda **kw: calls.append(kw) or next(rates))
    first = machine.matmul_peak_gflops(tmp_path)
    assert first == 55.0 and len(calls) == 5  # the median of 5 quick runs, not the best or the last one
    assert machine.matmul_peak_gflops(tmp_path) == 55.0 and len(calls) == 5  # the second profile reads the cache
    cache = json.loads((tmp_path / "matmul-peak.json").read_text())
    assert list(cache.values()) == [55.0] and "cpus" in next(iter(cache))
    assert [p.name for p in tmp_path.iterdir()] == ["matmul-peak.json"]  # no temporary file left
    (tmp_path / "matmul-peak.json").write_text("{not json")  # a damaged cache is measured again, not an error
    assert machine.matmul_peak_gflops(tmp_path) == 1.0


def test_unstable_timings_are_flagged(tiny_artifacts: Dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    from lite_deploy import benchmarking as bench

    steady = LatencyStats.of([10.0] * 99 + [12.0])
    jumpy = LatencyStats.of([10.0] * 97 + [400.0] * 3)
    assert not steady.unstable and steady.flag() == ""
    assert jumpy.unstable and jumpy.flag() == "unstable (p99/p50 40.0)"
    result = profile(tiny_artifacts["onnx"], runs=4, warmup=1, layers=False, peak=False, facts=False)
    result.latency = jumpy
    result.stages = dict(result.stages, infer=jumpy)
    lines = result.table().splitlines()
    assert [line.split()[0] for line in lines if line.endswith("unstable (p99/p50 40.0)")] == ["end-to-end", "infer"]
    # the benchmark table's status says so too
    monkeypatch.setattr("lite_deploy.runtime.profiling.profile.profile", lambda *a, **k: dataclasses.replace(result))
    row = bench.BenchmarkRow("onnx", "fp32")
    bench._measure(row, tiny_artifacts["onnx"], None, task="detect", data=None, imgsz=64, runs=4, warmup=1,
                   threads=None, progress=False)
    assert row.status == "ok, timing unstable (p99/p50 40.0)"
