"""Stop a long loop cleanly on SIGINT/SIGTERM/SIGUSR1 (SIGUSR1: what SLURM, through submitit's
``signal_delay_s``, sends before a job's time limit): the signal only raises a flag, the loop finishes its
step, saves and stops. A second Ctrl-C aborts at once (a user who presses it twice does not want to wait).

    with GracefulStop() as stop:
        for step in ...:
            ...
            if stop.requested:
                save(); raise stop.exit("training")
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


class Interrupted(SystemExit):
    """Raised after a clean stop; exits with the shell's 128 + signal number (130 for Ctrl-C, 143 for SIGTERM,
    138 for SIGUSR1)."""

    def __init__(self, signum: int, message: str):
        super().__init__(128 + signum)
        self.signum, self.message = signum, message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        """Pickled as its signal and message: a run stopped in a worker process reaches the parent as itself."""
        return type(self), (self.signum, self.message)


class GracefulStop:
    """Context manager that turns SIGINT/SIGTERM/SIGUSR1 into ``requested`` and restores the old handlers on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None

    def __enter__(self) -> "GracefulStop":
        # Handlers can only be installed from the main thread; elsewhere signals keep their default.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort now; every file is still written atomically
        self.signum = signum
        log.warning("%s received: finishing the current step, then saving and stopping "
                    "(press Ctrl-C again to abort at once)", signal.Signals(signum).name)

    def exit(self, message: str) -> Interrupted:
        """The exception to raise once the loop has saved: carries ``message`` and the exit status."""
        log.warning(message)
        # SIGTERM when another rank of the job got the signal and this one only heard of it
        return Interrupted(self.signum or signal.SIGTERM, message)
