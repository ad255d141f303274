"""Shared fixtures of the training tests."""

from __future__ import annotations

from typing import Callable

import pytest


@pytest.fixture
def interrupt_after_first_validation(monkeypatch: pytest.MonkeyPatch) -> Callable[[type], Callable[[], None]]:
    """``patch(TrainerClass)`` makes its runs stop with KeyboardInterrupt right after saving the first validated
    epoch, as a user's Ctrl-C would; the returned callable puts the real ``_save`` back for the resume."""

    def patch(trainer_cls: type) -> Callable[[], None]:
        original = trainer_cls._save

        def save_then_interrupt(self, ema, model, optimizer, epoch, results, improved):
            original(self, ema, model, optimizer, epoch, results, improved)
            if results and epoch == 0:
                raise KeyboardInterrupt

        monkeypatch.setattr(trainer_cls, "_save", save_then_interrupt)
        return lambda: monkeypatch.setattr(trainer_cls, "_save", original)

    return patch
