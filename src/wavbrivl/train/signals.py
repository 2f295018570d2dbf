"""Pre-emption: SIGTERM / SIGUSR1 (SLURM's pre-emption and time-limit warnings) become a flag
the training loop checks between steps; it then saves a checkpoint and raises
:class:`TrainingInterrupted`, a ``SystemExit`` with code 0 (rerun to resume)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any


class TrainingInterrupted(SystemExit):
    """A stop signal arrived; a checkpoint was saved. Exit code 0: rerun to resume."""

    def __init__(self, signal_name: str, checkpoint: Path, step: int):
        super().__init__(0)
        self.signal_name, self.checkpoint, self.step = signal_name, checkpoint, step

    def __str__(self) -> str:
        return f"{self.signal_name} at step {self.step}: saved {self.checkpoint}; rerun to resume"


class StopSignals:
    """Turns SIGTERM / SIGUSR1 into a flag the loop checks between steps."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
