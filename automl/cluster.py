"""The connection to a Dask cluster: the client auto-sklearn's search runs its evaluations through, and through which
a large pool of texts is predicted in chunks (automl.pool_prediction).

The cluster is `distributed`'s own (`dask scheduler`, `dask worker`): no scheduler of ours. Workers need this project
installed (they unpickle its models and components) and, for the search, the state folder at the same path
(auto-sklearn's evaluations read the data and write their runs in the search's scratch folder), and they must be
allowed to start processes (`DASK_DISTRIBUTED__WORKER__DAEMON=False`: each pipeline fit runs in one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from distributed import Client

from automl.errors import ClusterError

__all__ = ["SmacClient", "connect"]


class SmacClient(Client):
    """A dask client as SMAC 1.2 (auto-sklearn 0.15's) expects it: it calls `_get_scheduler_info()` without the
    `n_workers` that distributed 2025+ requires, and reads a dict where those return (scheduler, info)."""

    def _get_scheduler_info(self, n_workers: int = -1):
        info = super()._get_scheduler_info(n_workers)
        return info[1] if isinstance(info, tuple) else info


@contextlib.contextmanager
def connect(scheduler: str, timeout_seconds: float) -> Iterator[SmacClient]:
    """A client of the cluster at `scheduler` that has at least one worker, closed afterwards (the cluster stays)."""
    try:
        client = SmacClient(scheduler, timeout=timeout_seconds)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"[compute] scheduler = {scheduler!r}: no Dask scheduler answers there ({exc}). Start it"
                           " (`dask scheduler`, then `dask worker <address>` per machine), correct the address, or"
                           " unset it to compute on this machine") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout_seconds)
        except (OSError, TimeoutError):
            raise ClusterError(f"[compute] scheduler = {scheduler!r}: the scheduler has no worker after"
                               f" {timeout_seconds:g} s. Start one per machine: `dask worker {scheduler}`") from None
        yield client
    finally:
        client.close()
