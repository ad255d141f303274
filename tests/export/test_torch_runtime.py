"""The .pt reference runtime sizes torch's threads on purpose: the cores free now, one inter-op thread."""

from __future__ import annotations

import subprocess
import sys

import pytest
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
    monkeypatch.setattr(machine, "_own_running_threads", lambda: 1)
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert machine.physical_cores() == 4  # 8 hyper-threads on 4 cores
    assert machine.free_cores() == 4  # /proc/loadavg unreadable: every usable core
    files["/proc/loadavg"] = "0.10 0.20 0.30 1/300 4242"  # only this process runs
    assert machine.free_cores() == 4
    files["/proc/loadavg"] = "0.16 0.20 0.10 3/300 4242"  # two jobs begun seconds ago: the average still lags
    assert machine.free_cores() == 2
    files["/proc/loadavg"] = "9.00 9.00 9.00 12/300 4242"  # oversubscribed: still one thread
    assert machine.free_cores() == 1
    monkeypatch.setattr(machine, "_own_running_threads", lambda: 3)  # this process's own spinning threads
    files["/proc/loadavg"] = "2.00 2.00 2.00 3/300 4242"
    assert machine.free_cores() == 4
    files["/sys/fs/cgroup/cpu.max"] = "200000 100000"  # a container allowed 2 CPUs
    assert machine.usable_cores() == 2


def test_free_cores_sees_a_busy_process_at_once() -> None:
    import multiprocessing
    import time

    before = machine.free_cores()
    if before < 2:
        pytest.skip("needs two free cores")
    spinner = multiprocessing.get_context("spawn").Process(target=_spin, args=(30.0,))
    spinner.start()
    try:
        time.sleep(1.0)  # the child's interpreter starting
        assert machine.free_cores() <= before - 1
    finally:
        spinner.terminate()
        spinner.join()


def _spin(seconds: float) -> None:
    import time

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
