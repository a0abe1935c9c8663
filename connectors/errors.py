"""Errors of the labelling platforms, in the service's one error family."""

from __future__ import annotations

from automl.errors import ClassieError

__all__ = ["PlatformError", "PlatformUnavailable"]


class PlatformError(ClassieError):
    """The platform refused what retrying cannot fix: no key or a wrong one, an unknown project, an unusable
    interface, a write it did not take."""

    exit_code = 2


class PlatformUnavailable(PlatformError):
    """The platform did not answer, or kept failing, after the retries: a later cycle may succeed."""

    exit_code = 3
