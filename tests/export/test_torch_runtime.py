"""The .pt reference runtime sizes torch's threads on purpose: the cores free now, one inter-op thread."""

from __future__ import annotations

import subprocess
import sys

import torch

from lite_deploy.assets import demo_weights
from lite_deploy.export import torch_runtime
from lite_deploy.export.torch_runtime import TorchRuntime, set_torch_threads
from lite_deploy.runtime.profiling import machine


def test_runtime_takes_the_free_cores(monkeypatch) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(torch_runtime, "free_cores", lambda: 1)  # another job keeps the other core busy
        TorchRuntime(demo_weights(), imgsz=64)
        assert torch.get_num_threads() == 1
        TorchRuntime(demo_weights(), imgsz=64, threads=3)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_one_inter_op_thread() -> None:
    code = ("import torch; from lite_deploy.assets import demo_weights; "
            "from lite_deploy.export.torch_runtime import TorchRuntime; "
            "TorchRuntime(demo_weights(), imgsz=64); print(torch.get_num_interop_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1"


def test_set_torch_threads_floor_is_one() -> None:
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_free_cores_subtracts_other_running_work(monkeypatch) -> None:
    cpuinfo = "".join(f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {i // 2}\n\n" for i in range(8))
    files = {"/proc/cpuinfo": cpuinfo, "/proc/loadavg": "", "/sys/fs/cgroup/cpu.max": ""}
    monkeypatch.setattr(machine, "_read", lambda path: files.get(str(path), ""))
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert machine.physical_cores() == 4  # 8 hyper-threads on 4 cores
    files["/proc/loadavg"] = "0.10 0.20 0.30 1/300 4242"  # only this process runs
    assert machine.free_cores() == 4
    files["/proc/loadavg"] = "3.20 2.00 1.00 4/300 4242"  # three other jobs, for a minute already
    assert machine.free_cores() == 1
    files["/proc/loadavg"] = "0.30 0.20 0.10 6/300 4242"  # a burst that has just begun counts as the average
    assert machine.free_cores() == 4
    files["/proc/loadavg"] = "9.00 9.00 9.00 12/300 4242"  # oversubscribed: still one thread
    assert machine.free_cores() == 1
    files["/sys/fs/cgroup/cpu.max"] = "200000 100000"  # a container allowed 2 CPUs
    assert machine.usable_cores() == 2
