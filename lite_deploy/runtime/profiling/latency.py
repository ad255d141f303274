"""Latency statistics: one summary type (:class:`LatencyStats`) for the profiler and the stream, and the bounded
accumulator a long-running stream feeds (:class:`LatencyReservoir`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

UNSTABLE_RATIO = 3.0  # p99 / p50 above which a timing is flagged unstable
RESERVOIR_SIZE = 4096  # latencies kept per stage for the percentiles


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, all in milliseconds (NaN everywhere when there were none: :meth:`none`)."""

    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> "LatencyStats":
        """Statistics of ``samples_ms`` (percentiles linearly interpolated, so min <= p50 <= p90 <= p99 <= max).

        Raises:
            ValueError: no samples.
        """
        a = np.asarray(samples_ms, np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(float(a.mean()), float(p50), float(p90), float(p99), float(a.min()), float(a.max()))

    @classmethod
    def none(cls) -> "LatencyStats":
        """The statistics of no samples: every field NaN."""
        nan = float("nan")
        return cls(nan, nan, nan, nan, nan, nan)

    @property
    def unstable(self) -> bool:
        """Whether the timing is too unsteady to quote: p99 more than :data:`UNSTABLE_RATIO` times p50 (another
        job on the machine, thermal throttling, swapping)."""
        return self.p99 > UNSTABLE_RATIO * self.p50

    def flag(self) -> str:
        """``"unstable (p99/p50 N.N)"`` for an unstable timing, else ``""``."""
        return f"unstable (p99/p50 {self.p99 / self.p50:.1f})" if self.unstable and self.p50 > 0 else ""


class LatencyReservoir:
    """Running mean, minimum and maximum of one latency, and a uniform reservoir sample of fixed size for the
    percentiles.

    Memory is O(``capacity``) however many values are added; percentiles are exact up to ``capacity`` values and
    estimated from the sample beyond.
    """

    def __init__(self, capacity: int = RESERVOIR_SIZE, seed: int = 0) -> None:
        self.count = 0
        self.total = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self._sample = np.empty(capacity, np.float64)
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        """Record one value in ms (Algorithm R: the sample stays a uniform draw of everything added)."""
        capacity = self._sample.shape[0]
        if self.count < capacity:
            self._sample[self.count] = value
        else:
            slot = self._rng.randrange(self.count + 1)
            if slot < capacity:
                self._sample[slot] = value
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def stats(self) -> LatencyStats:
        """Mean, minimum and maximum of every value so far; percentiles of the sample."""
        if not self.count:
            return LatencyStats.none()
        p50, p90, p99 = np.percentile(self._sample[: min(self.count, self._sample.shape[0])], [50, 90, 99])
        return LatencyStats(self.total / self.count, float(p50), float(p90), float(p99), self.min, self.max)
