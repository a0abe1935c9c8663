"""Install, start and drive a real Label Studio server for the tests.

Label Studio needs numpy>=2.2, the project pins numpy 1.23.5: it lives in its own virtual environment
(`<repo>/.ls-venv`, or `$CLASSIE_LS_VENV`), installed on first use and reused afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LABEL_STUDIO_VERSION = "1.23.2"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO_ROOT / ".ls-venv"
STAMP_NAME = ".classie-ls-stamp.json"
LOCK_NAME = ".classie-ls-install.lock"
PIP_LOG_NAME = "pip-install.log"


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _clean_env(extra: dict | None = None) -> dict[str, str]:
    """The current environment without what would make a child Python use this project's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def _base_python() -> str:
    """python3.11 from PATH if it runs, else the base interpreter behind sys.executable."""
    candidates = []
    found = shutil.which("python3.11")
    if found:
        candidates.append(found)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name in (f"python{version}", "python3", "python"):
        candidates.append(str(Path(sys.base_prefix) / "bin" / name))
    candidates.append(sys.executable)
    for candidate in candidates:
        if not Path(candidate).exists():
            continue
        probe = subprocess.run(
            [candidate, "-c", "import venv, ensurepip"], env=_clean_env(), capture_output=True, timeout=60
        )
        if probe.returncode == 0:  # a pyenv shim without that version installed fails here
            return candidate
    raise RuntimeError(f"no Python able to create a venv among {candidates}")


def _read_stamp(venv: Path) -> dict:
    try:
        return json.loads((venv / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _is_ready(venv: Path) -> bool:
    exe = venv / "bin" / "label-studio"
    return _read_stamp(venv).get("label-studio") == LABEL_STUDIO_VERSION and exe.exists()


def default_venv() -> Path:
    return Path(os.environ.get("CLASSIE_LS_VENV") or DEFAULT_VENV)


def ensure_label_studio(venv: Path | None = None) -> Path:
    """Create (or reuse) Label Studio's own venv; return the path of its `label-studio` executable.

    Safe to call from several processes at once: the install runs under an exclusive lock and the
    others wait for it, then find the stamp and return.
    """
    venv = Path(venv) if venv is not None else default_venv()
    exe = venv / "bin" / "label-studio"
    if _is_ready(venv):
        return exe
    venv.mkdir(parents=True, exist_ok=True)
    with open(venv / LOCK_NAME, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _is_ready(venv):  # another process installed it while this one waited
                return exe
            (venv / STAMP_NAME).unlink(missing_ok=True)
            (venv / ".gitignore").write_text("*\n", encoding="utf-8")
            log_path = venv / PIP_LOG_NAME
            started = time.monotonic()
            with open(log_path, "w", encoding="utf-8") as log:
                steps = []
                if not (venv / "bin" / "python").exists():
                    steps.append([_base_python(), "-m", "venv", str(venv)])
                steps.append(
                    [str(venv / "bin" / "python"), "-m", "pip", "install", f"label-studio=={LABEL_STUDIO_VERSION}"]
                )
                for cmd in steps:
                    log.write(f"$ {' '.join(cmd)}\n")
                    log.flush()
                    result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_clean_env(), timeout=1800)
                    if result.returncode != 0:
                        log.flush()
                        raise RuntimeError(
                            f"installing Label Studio into {venv} failed ({' '.join(cmd[:4])}... exit "
                            f"{result.returncode}); last lines of {log_path}:\n{_tail(log_path)}"
                        )
            if not exe.exists():
                raise RuntimeError(f"pip succeeded but {exe} is missing; see {log_path}:\n{_tail(log_path)}")
            stamp = {
                "label-studio": LABEL_STUDIO_VERSION,
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.monotonic() - started, 1),
            }
            (venv / STAMP_NAME).write_text(json.dumps(stamp) + "\n", encoding="utf-8")
            return exe
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


if __name__ == "__main__":  # python tests/label_studio_server.py: install only
    t0 = time.monotonic()
    print(ensure_label_studio(), f"{time.monotonic() - t0:.1f} s")
    with contextlib.suppress(Exception):
        pass
