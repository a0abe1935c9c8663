"""The service's one error family. Every error a user may meet is a `ClassieError` whose message names the place, the
problem and the fix; the command line maps `exit_code` to the process's exit status, in one place."""

from __future__ import annotations

__all__ = ["ClassieError", "ClusterError", "InputError"]


class ClassieError(Exception):
    """An error reported to the user as its message, without a traceback."""

    exit_code = 1


class InputError(ClassieError, ValueError):
    """Something the user gave cannot be used (a setting, a taxonomy, an assets file): correcting it fixes it."""

    exit_code = 2


class ClusterError(ClassieError):
    """The Dask cluster named by `[compute] scheduler` cannot be reached or lost the work it was given; it may come
    back, so a polling worker tries again at its next cycle."""
