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

FORMATS = ("plain", "json")
# Third-party loggers that talk too much at INFO for an always-on worker.
_QUIET = ("distributed", "smac", "autosklearn", "matplotlib", "httpx", "gql.transport")


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
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
