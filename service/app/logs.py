"""Log set-up for every command: plain lines for a terminal, or one JSON object per line for a log collector.

Chosen by CLASSIE_LOG_FORMAT (`plain`, the default, or `json`) and CLASSIE_LOG_LEVEL (default INFO, DEBUG with -v).
Read here, at the edge, before any configuration is loaded, so that configuration errors are logged the same way.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from pythonjsonlogger.json import JsonFormatter

from service.config import ConfigError

__all__ = ["setup_logging"]

FORMATS = ("plain", "json")
# Third-party loggers that talk too much for an always-on worker (at WARNING even with -v: gql alone writes thousands
# of DEBUG lines building the SDK's schema).
_QUIET = ("distributed", "smac", "autosklearn", "matplotlib", "httpx", "gql", "pyrate_limiter")


class QueryRedaction(logging.Filter):
    """Blanks the values of a query string in uvicorn's access lines (`GET /health?token=<redacted>`): a caller may
    put a token there, and access logs are kept and shipped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        return True

    @staticmethod
    def redact(path: str) -> str:
        head, _, query = path.partition("?")
        parts = [(f"{p.partition('=')[0]}=" if "=" in p else "") + "<redacted>" if p else p for p in query.split("&")]
        return f"{head}?{'&'.join(parts)}"


def redact_access_log() -> None:
    """Query strings out of uvicorn's access log (`serve` runs uvicorn with our handlers); once per process."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QueryRedaction) for f in access.filters):
        access.addFilter(QueryRedaction())


def log_formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        # time, level, logger and message, then whatever a call passes in `extra` (e.g. the cycle's counts).
        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                             rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                             datefmt="%Y-%m-%dT%H:%M:%S%z")
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")


def setup_logging(verbose: bool = False, environ: Mapping[str, str] = os.environ) -> None:
    fmt = environ.get("CLASSIE_LOG_FORMAT", "plain").strip().lower() or "plain"
    if fmt not in FORMATS:
        raise ConfigError(f"CLASSIE_LOG_FORMAT={fmt!r}: use one of {', '.join(FORMATS)}.")
    level_name = "DEBUG" if verbose else environ.get("CLASSIE_LOG_LEVEL", "INFO").strip().upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        raise ConfigError(f"CLASSIE_LOG_LEVEL={level_name!r}: use DEBUG, INFO, WARNING or ERROR.")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    redact_access_log()
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # distributed sets its loggers' levels from dask's config when it is imported (by a search, later): tell it too.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", logging.getLevelName(max(level, logging.WARNING)).lower())
