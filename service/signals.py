"""Stopping on SIGTERM/SIGINT: the signal sets an event that the worker checks between batches and while training."""

from __future__ import annotations

import logging
import os
import signal
import threading

__all__ = ["StopRequested", "install_stop_handlers"]

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """A stop was requested before the cycle could finish; nothing half-done was kept."""


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop` in this process. A process forked from it (auto-sklearn's workers, which are
    stopped by signal) behaves as if no handler were set."""
    main_pid = os.getpid()

    def request_stop(signum, _frame) -> None:
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop.set()
        log.info("received %s: stopping after the current batch (a training is abandoned)",
                 signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
