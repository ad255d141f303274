"""Facts about the machine a model is profiled on: CPU, Jetson model, power mode, clocks, memory, matmul peak.

Linux files are read where they exist (``/proc/cpuinfo``, ``/proc/device-tree/model``, cpufreq and devfreq in
``/sys``); anything unreadable is left out rather than guessed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from ...io import atomic_write_bytes

CPUINFO_KEYS = ("model name", "Hardware", "Processor", "cpu model")


def device_facts() -> Dict[str, str]:
    """What the machine is: ``cpu``, ``cores``, ``machine`` (architecture), ``os``, ``python``, and where readable
    ``jetson_model``, ``power_mode`` (``nvpmodel -q``), ``cpu_mhz`` (current / max of CPU 0) and ``<device>_mhz``
    for each devfreq device (on a Jetson: the GPU, EMC, DLA...).
    """
    facts = {
        "cpu": _cpu_model() or platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    model = _read("/proc/device-tree/model")
    if model:
        facts["jetson_model" if "jetson" in model.lower() else "board"] = model
    power = _power_mode()
    if power:
        facts["power_mode"] = power
    cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    current, top = _read(cpufreq / "scaling_cur_freq"), _read(cpufreq / "cpuinfo_max_freq")
    if current.isdigit():
        facts["cpu_mhz"] = f"{int(current) // 1000}" + (f" (max {int(top) // 1000})" if top.isdigit() else "")
    devfreq = Path("/sys/class/devfreq")
    if devfreq.is_dir():
        for device in sorted(devfreq.iterdir()):
            freq = _read(device / "cur_freq")
            if freq.isdigit():
                facts[f"{device.name}_mhz"] = str(int(freq) // 1_000_000)
    return facts


def sgemm_peak_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    """The machine's measured float32 matrix-multiply rate: the best of repeated (n, n) @ (n, n) numpy products.

    numpy's BLAS uses its default thread count (usually every core).

    Args:
        n: matrix size.
        seconds: time spent timing (at least 3 products are timed).

    Returns:
        GFLOP/s (2 n^3 floating-point operations per product).
    """
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)  # load the BLAS, fault in the pages
    best, count, start = float("inf"), 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        tic = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - tic)
        count += 1
    return 2 * n**3 / best / 1e9


def matmul_peak_gflops(cache_dir: Optional[Union[str, Path]] = None) -> float:
    """This machine's float32 matmul rate, measured once and cached: the median of 5 short runs of
    :func:`sgemm_peak_gflops`, so one run on a busy moment does not become the reference.

    The cache is a JSON file ``matmul-peak.json`` in ``cache_dir`` (default ``$XDG_CACHE_HOME/lite-deploy`` or
    ``~/.cache/lite-deploy``), keyed by CPU model, usable cores and the BLAS thread variables; written atomically.
    An unwritable cache only costs the measurement next time.

    Returns:
        GFLOP/s.
    """
    folder = Path(cache_dir) if cache_dir is not None else Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lite-deploy"
    path = folder / "matmul-peak.json"
    threads = ",".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                       if k in os.environ)
    key = f"{_cpu_model() or platform.machine()} | {usable_cores()} cpus | {threads or 'default threads'}"
    try:
        cache = json.loads(path.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    value = cache.get(key)
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    gflops = float(np.median([sgemm_peak_gflops(seconds=0.2) for _ in range(5)]))
    cache[key] = round(gflops, 2)
    try:
        atomic_write_bytes(path, json.dumps(cache, indent=1, sort_keys=True).encode())
    except OSError:
        pass
    return gflops


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (``cpu.max``) in a container."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota, _, period = _read("/sys/fs/cgroup/cpu.max").partition(" ")
    if quota.isdigit() and period.strip().isdigit() and int(period) > 0:
        cores = min(cores, max(1, int(quota) // int(period)))
    return max(1, cores)


def free_cores(samples: int = 5, interval_s: float = 0.002) -> int:
    """Cores free for this process's compute threads now: usable cores minus the other work running now.

    Other work is the median, over ``samples`` readings ``interval_s`` apart, of the tasks runnable on the machine
    (``/proc/loadavg``'s fourth field) less this process's own runnable threads, so this process's spinning worker
    threads do not count as other work and a momentary blip does not either. The 1-minute load average is not used:
    it lags a job that began seconds ago (2 busy processes read as 0.16 after 5 s). Also capped by the physical cores
    (hyper-threads share one core's units; see :func:`compute_cores`). At least 1; :func:`compute_cores` where
    ``/proc`` is not readable.
    """
    cores = compute_cores()
    others = []
    for index in range(samples):
        fields = _read("/proc/loadavg").split()
        if len(fields) < 4 or "/" not in fields[3]:
            return cores
        others.append(int(fields[3].split("/")[0]) - _own_running_threads())
        if index + 1 < samples:
            time.sleep(interval_s)
    busy = max(int(np.median(others) + 0.5), 0)
    return max(1, cores - busy)


def compute_cores() -> int:
    """Cores this process's compute threads can use when the machine is free: the usable cores
    (:func:`usable_cores`) capped by the physical cores (hyper-threads share one core's units)."""
    return min(usable_cores(), physical_cores())


def _own_running_threads() -> int:
    """This process's threads that are runnable now (state ``R`` in ``/proc/self/task/*/stat``); at least 1, the
    thread asking."""
    running = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        _, _, after = _read(stat).rpartition(")")  # the thread name may hold spaces and parentheses
        running += after.split()[:1] == ["R"]
    return max(running, 1)


def physical_cores() -> int:
    """Physical cores among this machine's CPUs (distinct ``physical id``/``core id`` pairs); the logical count
    where ``/proc/cpuinfo`` does not say."""
    pairs, physical, core = set(), "", ""
    for line in _read("/proc/cpuinfo").splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not key and core:
            pairs.add((physical, core))
            physical, core = "", ""
    return len(pairs) or os.cpu_count() or 1


def peak_rss_mb() -> Optional[float]:
    """Peak resident memory of this process so far, MB (``getrusage``'s ``ru_maxrss``); ``None`` where unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in CPUINFO_KEYS and value.strip():
            return value.strip()
    return ""


def _power_mode() -> str:
    """First line of ``nvpmodel -q`` (e.g. ``NV Power Mode: MAXN``), or ``""`` without nvpmodel."""
    nvpmodel = shutil.which("nvpmodel")
    if nvpmodel is None:
        return ""
    try:
        result = subprocess.run([nvpmodel, "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _read(path: Union[str, Path]) -> str:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""
