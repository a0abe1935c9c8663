"""Install, start and drive a real Label Studio server for the tests.

Label Studio needs numpy>=2.2, the project pins numpy 1.23.5: it lives in its own virtual environment
(`<repo>/.ls-venv`, or `$CLASSIE_LS_VENV`), installed on first use from its lock (scripts/setup-label-studio.sh,
locks/label-studio.txt) and reused afterwards while the lock is the same.

    from label_studio_server import label_studio  # noqa: F401  (session fixture: a running server)

    def test_something(label_studio):
        project = label_studio.create_project("t", CONFIG)   # REST helpers are on the server object,
        label_studio.client.tasks(project["id"])              # or on its LabelStudioClient

The server runs as Label Studio comes: legacy tokens off (`LabelStudioServer(legacy_token_flag=True)` starts it with
them on). `server.token` is the token a user would copy from Account & Settings: the admin's Personal Access Token
(`server.pat`, made through a session login, as the browser does), or the legacy token (`server.legacy_token`) when
the organization takes legacy tokens. `server.jwt_settings(...)` reads or changes the organization's token settings.

Everything binds to 127.0.0.1; nothing is written outside the venv and the server's data dir.
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK_INPUTS = REPO_ROOT / "locks" / "label-studio.in"
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup-label-studio.sh"
DEFAULT_VENV = REPO_ROOT / ".ls-venv"
STAMP_NAME = ".classie-ls-lock"  # written by SETUP_SCRIPT: the hash of the lock the venv was built from
LOCK_NAME = ".classie-ls-install.lock"
TEMPLATE_DIR = "db-template"
TEMPLATE_DB = "label_studio.sqlite3"
TEMPLATE_LOG_NAME = "db-template.log"
TEMPLATE_ERROR_NAME = "db-template.error"


def locked_version(inputs: Path = LOCK_INPUTS) -> str:
    """The Label Studio version the lock's inputs name: the one place that says which Label Studio the project runs."""
    for line in inputs.read_text(encoding="utf-8").splitlines():
        found = re.fullmatch(r"label-studio==(\S+)", line.strip())
        if found:
            return found.group(1)
    raise RuntimeError(f"{inputs} names no 'label-studio==VERSION' line: put one back, then run scripts/lock.sh")


LABEL_STUDIO_VERSION = locked_version()


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


def template_db(venv: Path) -> Path:
    """A database with every migration applied and no user: copied into new data dirs, it saves the ~45 s
    of migrations a fresh Label Studio spends before it answers."""
    return venv / TEMPLATE_DIR / TEMPLATE_DB


def _setup(venv: Path, *flags: str, **run: Any) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP_SCRIPT), *flags, str(venv)], env=_clean_env(), **run)


def _installed(venv: Path) -> bool:
    """Built from the current lock (the setup script compares its stamp with the lock's hash)."""
    return _setup(venv, "--check", capture_output=True).returncode == 0


def _is_ready(venv: Path) -> bool:
    return _installed(venv) and (template_db(venv).exists() or (venv / TEMPLATE_ERROR_NAME).exists())


def default_venv() -> Path:
    return Path(os.environ.get("CLASSIE_LS_VENV") or DEFAULT_VENV)


def ensure_label_studio(venv: Path | None = None) -> Path:
    """Create (or reuse) Label Studio's own venv from its lock; return the path of its `label-studio` executable.

    A venv built from another lock is built again. Safe to call from several processes at once: the install runs
    under an exclusive lock and the others wait for it, then find the stamp and return.
    """
    venv = Path(venv).absolute() if venv is not None else default_venv().absolute()
    exe = venv / "bin" / "label-studio"
    if _is_ready(venv):
        return exe
    venv.mkdir(parents=True, exist_ok=True)
    with open(venv / LOCK_NAME, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _installed(venv):  # (re)checked under the lock: another process may have done it
                _install(venv)
            if not _is_ready(venv):
                _build_template(venv)
            return exe
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install(venv: Path) -> None:
    """scripts/setup-label-studio.sh: every package from locks/label-studio.txt, checked against its hash."""
    done = subprocess.run(
        ["bash", str(SETUP_SCRIPT), str(venv)], capture_output=True, text=True, timeout=1800,
        env=_clean_env({"PYTHON": _base_python()}),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"installing Label Studio into {venv} failed (exit {done.returncode}):\n"
                           f"{done.stderr[-6000:]}")


def _build_template(venv: Path) -> None:
    """Apply the migrations once (`label-studio version` does, and creates no user). Best effort: on
    failure TEMPLATE_ERROR_NAME records why and servers migrate their own database."""
    work = venv / f"{TEMPLATE_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "home").mkdir(parents=True)
    log_path = venv / TEMPLATE_LOG_NAME
    env = _clean_env(
        {
            "HOME": work / "home",
            "LABEL_STUDIO_BASE_DATA_DIR": work,
            "SECRET_KEY": secrets.token_urlsafe(40),
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
        }
    )
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            result = subprocess.run(
                [str(venv / "bin" / "label-studio"), "version", "--data-dir", str(work)],
                cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=900,
            )  # fmt: skip
        db = work / TEMPLATE_DB
        if result.returncode != 0 or not db.exists():
            raise RuntimeError(f"exit {result.returncode}, see {log_path}")
        template_db(venv).parent.mkdir(exist_ok=True)
        os.replace(db, template_db(venv))
        (venv / TEMPLATE_ERROR_NAME).unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - the template only saves time
        (venv / TEMPLATE_ERROR_NAME).write_text(f"{exc}\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- server

_STARTING_RE = re.compile(rb"Starting development server at https?://[^:/\s]+:(\d+)/")
_MOVED_RE = re.compile(rb"Trying to start at (\d+)")
_PORT_TAKEN = b"That port is already in use"
_CREDENTIALS_NAME = ".classie-ls-credentials.json"
_LOG_NAME = "label-studio.log"
_running: set[LabelStudioServer] = set()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_parent_death_signal() -> None:  # runs in the child before exec (Linux): die with the test process
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort only
        pass


class LabelStudioError(RuntimeError):
    """A Label Studio REST call answered an error status."""

    def __init__(self, response: requests.Response) -> None:
        self.status_code = response.status_code
        self.response = response
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text[:2000]
        super().__init__(f"{response.request.method} {response.url} -> {response.status_code}: {self.body}")


def is_jwt(token: str) -> bool:
    """A Personal Access Token (a JWT: three base64url parts), not a legacy token."""
    return re.fullmatch(r"eyJ[\w-]*\.[\w-]+\.[\w-]+", token) is not None


def jwt_claims(token: str) -> dict:
    """A JWT's payload, unverified."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class LabelStudioClient:
    """The few REST calls the tests need, with `requests` only: `Authorization: Token <token>` for a legacy token;
    for a Personal Access Token, `Bearer <access token>` from `POST /api/token/refresh/`, exchanged again near its
    expiry and once on a 401. (Independent of connectors/label_studio_client.py, which the tests check.)"""

    def __init__(self, url: str, token: str, timeout: float = 60) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = requests.Session()
        self._access: str | None = None
        self.refreshes = 0  # access tokens obtained
        self.last_import: dict | None = None  # the answer of the last import_tasks()

    def authorization(self, renew: bool = False) -> str:
        if not is_jwt(self.token):
            return f"Token {self.token}"
        if renew or self._access is None or jwt_claims(self._access)["exp"] - time.time() < 30:
            response = self.session.post(self.url + "/api/token/refresh/", json={"refresh": self.token},
                                         timeout=self.timeout)
            if response.status_code != 200:
                raise LabelStudioError(response)
            self._access = response.json()["access"]
            self.refreshes += 1
        return f"Bearer {self._access}"

    def use_token(self, token: str) -> None:
        self.token, self._access = token, None

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        """`path` is relative to the server ("/api/..."); raises LabelStudioError on a status >= 400 not in `ok`."""
        kwargs.setdefault("timeout", self.timeout)
        headers = {**kwargs.pop("headers", {}), "Authorization": self.authorization()}
        response = self.session.request(method, self.url + path, headers=headers, **kwargs)
        if response.status_code == 401 and is_jwt(self.token):
            headers["Authorization"] = self.authorization(renew=True)
            response = self.session.request(method, self.url + path, headers=headers, **kwargs)
        if response.status_code >= 400 and response.status_code not in ok:
            raise LabelStudioError(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    # ---- projects

    def create_project(self, title: str, label_config: str, **fields: Any) -> dict:
        return self._json("POST", "/api/projects", json={"title": title, "label_config": label_config, **fields})

    def project(self, project_id: int) -> dict:
        return self._json("GET", f"/api/projects/{project_id}")

    def update_project(self, project_id: int, **fields: Any) -> dict:
        return self._json("PATCH", f"/api/projects/{project_id}", json=fields)

    # ---- tasks and annotations

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import `[{"data": {...}, "annotations": [{"result": [...]}], "predictions": [...]}, ...]` in one
        request; returns the ids of the created tasks, in the order sent. The full answer (task_count,
        annotation_count, prediction_count, ...) is kept in `last_import`."""
        path = f"/api/projects/{project_id}/import"
        answer = self._json("POST", path, params={"return_task_ids": "true"}, json=tasks)
        self.last_import = answer
        ids = answer.get("task_ids")
        if ids is None:  # older versions: no ids in the answer; the newest tasks are the imported ones
            ids = sorted(t["id"] for t in self.tasks(project_id))[-answer.get("task_count", len(tasks)) :]
        return list(ids)

    def tasks(self, project_id: int, page_size: int = 100) -> list[dict]:
        """All tasks of the project, every page, with their annotations and predictions."""
        out: list[dict] = []
        page = 1
        while True:
            response = self.request(
                "GET",
                "/api/tasks",
                params={"project": project_id, "fields": "all", "page": page, "page_size": page_size},
                ok=(404,),
            )
            if response.status_code == 404:  # past the last page
                break
            body = response.json()
            batch = body["tasks"] if isinstance(body, dict) else body
            out.extend(batch)
            total = body.get("total") if isinstance(body, dict) else None
            if not batch or len(batch) < page_size or (total is not None and len(out) >= total):
                break
            page += 1
        return out

    def task(self, task_id: int) -> dict:
        return self._json("GET", f"/api/tasks/{task_id}")

    def create_annotation(self, task_id: int, result: list, **fields: Any) -> dict:
        return self._json("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result, **fields})

    # ---- predictions

    def predictions(self, project_id: int) -> list[dict]:
        return self._json("GET", "/api/predictions", params={"project": project_id})

    def create_prediction(
        self, task_id: int, result: list, score: float | None = None, model_version: str | None = None
    ) -> dict:
        body: dict[str, Any] = {"task": task_id, "result": result}
        if score is not None:
            body["score"] = score
        if model_version is not None:
            body["model_version"] = model_version
        return self._json("POST", "/api/predictions", json=body)

    def import_predictions(self, project_id: int, predictions: list[dict]) -> dict:
        """Bulk `POST /api/projects/{id}/import/predictions` of `[{"task", "result", "score", "model_version"}]`.

        Answers 201 `{"created": n}`; invalid predictions are dropped silently, so compare n with
        len(predictions). Taxonomy labels are checked as a flat set of alias-or-value names: a path of
        values where aliases exist is dropped, a path with a wrong parent is accepted. An unknown task id
        is a 400 for the whole request."""
        return self._json("POST", f"/api/projects/{project_id}/import/predictions", json=predictions)

    # ---- ML backends and webhooks

    def connect_ml_backend(
        self,
        project_id: int,
        url: str,
        title: str = "classie-automl",
        extra: dict | None = None,
        *,
        basic_auth_user: str | None = None,
        basic_auth_pass: str | None = None,
    ) -> dict:
        """`POST /api/ml {url, project, title, is_interactive, auth_method, basic_auth_user, basic_auth_pass}`.

        Before answering, Label Studio calls the backend's GET /health and POST /setup (twice each) and
        answers 400 if either fails (a 401 from the backend gives "authentication parameters were either
        not provided or are incorrect"). It then sets the project's model_version to `title` and creates a
        project webhook `<url>/webhook` for all actions.

        `extra` is merged into the request body (e.g. `{"extra_params": {...}, "is_interactive": True,
        "timeout": 30, "description": "..."}`); `extra_params` reaches the backend in /setup. With
        `basic_auth_user`/`basic_auth_pass` (auth_method BASIC_AUTH), Label Studio sends HTTP Basic auth on
        /health, /setup, /predict and /versions, but NOT on the webhook: see `set_webhook_headers`."""
        if (basic_auth_user is None) != (basic_auth_pass is None):
            # Label Studio 1.23.2 answers 500 to a user without a password (serializer bug)
            raise ValueError("give both basic_auth_user and basic_auth_pass, or neither")
        body: dict[str, Any] = {"url": url, "project": project_id, "title": title, "is_interactive": False}
        if basic_auth_user is not None:
            body.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth_user, basic_auth_pass=basic_auth_pass)
        body.update(extra or {})
        return self._json("POST", "/api/ml", json=body)

    def ml_backends(self, project_id: int) -> list[dict]:
        return self._json("GET", "/api/ml", params={"project": project_id})

    def webhooks(self, project_id: int) -> list[dict]:
        return self._json("GET", "/api/webhooks/", params={"project": project_id})

    def update_webhook(self, webhook_id: int, **fields: Any) -> dict:
        return self._json("PATCH", f"/api/webhooks/{webhook_id}/", json=fields)

    def set_webhook_headers(self, project_id: int, url_prefix: str, headers: dict[str, str]) -> list[dict]:
        """Put `headers` (e.g. an Authorization header) on the project's webhooks whose URL starts with
        `url_prefix`: the webhook Label Studio creates for an ML backend carries no credentials."""
        return [
            self.update_webhook(hook["id"], headers=headers)
            for hook in self.webhooks(project_id)
            if hook["url"].startswith(url_prefix)
        ]

    def whoami(self) -> dict:
        return self._json("GET", "/api/current-user/whoami")


class LabelStudioServer:
    """A real Label Studio server on 127.0.0.1, its database and files in `data_dir`.

    Restarting on the same data_dir is fast (~4 s, no migrations) and keeps the admin and its tokens, which
    are stored in `data_dir/.classie-ls-credentials.json`. `token` (the constructor's) is the admin's legacy token
    (LABEL_STUDIO_USER_TOKEN); `legacy_token_flag` starts the first server with `--enable-legacy-api-token`.
    """

    USERNAME = "admin@example.com"

    def __init__(
        self,
        data_dir: Path,
        token: str | None = None,
        env: dict | None = None,
        executable: Path | None = None,
        use_template: bool = True,
        legacy_token_flag: bool = False,  # False: as Label Studio comes, legacy tokens only if the environment says
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        credentials = self._load_credentials()
        if token is not None and len(token) <= 5:
            raise ValueError("Label Studio ignores a token of 5 characters or fewer: use e.g. secrets.token_hex(20)")
        if token is not None and credentials and credentials["token"] != token:
            raise ValueError(
                f"{self.data_dir} was set up with another token; Label Studio only applies the token when it "
                "creates the admin: use a new data dir or token=None"
            )
        if not credentials:
            credentials = {
                "username": self.USERNAME,
                "password": secrets.token_urlsafe(16),
                "token": token or secrets.token_hex(20),
                "secret_key": secrets.token_urlsafe(40),
            }
            self._save_credentials(credentials)
        # an environment that names the admin (as docker/example.env does) is what Label Studio uses
        named = {k: str(v) for k, v in (env or {}).items()}
        self.username: str = named.get("LABEL_STUDIO_USERNAME", credentials["username"])
        self.password: str = named.get("LABEL_STUDIO_PASSWORD", credentials["password"])
        self.legacy_token: str = named.get("LABEL_STUDIO_USER_TOKEN", credentials["token"])
        self.pat: str | None = credentials.get("pat")  # made on the first start
        self.legacy_tokens: bool | None = None  # the organization's setting, read at start
        self._secret_key: str = credentials["secret_key"]
        self.extra_env = dict(env or {})
        self.executable = Path(executable) if executable is not None else None
        self.use_template = use_template
        self.legacy_token_flag = legacy_token_flag
        self.log_path = self.data_dir / _LOG_NAME
        self.port: int | None = None
        self.url: str | None = None
        self.client: LabelStudioClient | None = None
        self.admin: requests.Session | None = None  # logged in as the admin (cookies), for what tokens cannot do
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def token(self) -> str:
        """What a user copies into LABEL_STUDIO_API_KEY: the legacy token where the organization takes legacy
        tokens, else the Personal Access Token."""
        if self.legacy_tokens or self.pat is None:
            return self.legacy_token
        return self.pat

    def _load_credentials(self) -> dict:
        try:
            return json.loads((self.data_dir / _CREDENTIALS_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _save_credentials(self, credentials: dict) -> None:
        path = self.data_dir / _CREDENTIALS_NAME
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(credentials), encoding="utf-8")
        temporary.chmod(0o600)
        os.replace(temporary, path)

    # ---- the admin's session and tokens

    def login(self, url: str) -> requests.Session | None:
        """A session logged in as the admin with its password (the login form, as a browser sends it); None if the
        server at `url` does not answer yet; PermissionError if it shows the form again (not this admin)."""
        session = requests.Session()
        try:
            session.get(url + "/user/login/", timeout=10)
            answer = session.post(url + "/user/login/", allow_redirects=False, timeout=10, data={
                "email": self.username, "password": self.password,
                "csrfmiddlewaretoken": session.cookies.get("csrftoken") or ""})
        except requests.RequestException:
            return None
        if answer.status_code == 200:
            raise PermissionError(f"the admin's login ({self.username}) was refused at {url}: another server, or"
                                  " a data dir made with other LABEL_STUDIO_USERNAME/PASSWORD")
        if answer.status_code != 302 or "sessionid" not in session.cookies:
            return None
        session.headers.update({"X-CSRFToken": session.cookies.get("csrftoken") or "", "Referer": url + "/"})
        return session

    def _admin_call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if self.admin is None or self.url is None:
            raise RuntimeError(f"{method} {path}: the Label Studio server is not started")
        response = self.admin.request(method, self.url + path, timeout=30, **kwargs)
        if response.status_code >= 400:
            raise LabelStudioError(response)
        return response

    def jwt_settings(self, **changes: bool) -> dict:
        """The organization's token settings ({"api_tokens_enabled", "legacy_api_tokens_enabled"}), changed first
        if `changes` are given; `token` follows them."""
        if changes:
            current = self._admin_call("GET", "/api/jwt/settings").json()
            self._admin_call("POST", "/api/jwt/settings", json={**current, **changes})
        settings = self._admin_call("GET", "/api/jwt/settings").json()
        self.legacy_tokens = bool(settings["legacy_api_tokens_enabled"])
        if self.client is not None:
            self.client.use_token(self.token)
        return settings

    def rotate_pat(self) -> str:
        """Revoke the Personal Access Token for a new one (Label Studio's rotate); returns the revoked one."""
        old = str(self.pat)
        response = self._admin_call("POST", "/api/token/rotate/", json={"refresh": old})
        self._set_pat(response.json()["refresh"])
        return old

    def signed_jwt(self, **claims: Any) -> str:
        """A JWT signed as this server signs its tokens (HS256 with its SECRET_KEY, simplejwt's default): for a
        token Label Studio makes only after a long wait, e.g. an expired Personal Access Token."""
        def part(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).decode().rstrip("=")
        header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
        signed = f"{part(header)}.{part(json.dumps(claims).encode())}"
        signature = hmac.new(self._secret_key.encode(), signed.encode(), hashlib.sha256).digest()
        return f"{signed}.{part(signature)}"

    def _set_pat(self, pat: str) -> None:
        self.pat = pat
        self._save_credentials({**self._load_credentials(), "pat": pat})
        if self.client is not None:
            self.client.use_token(self.token)

    def _ensure_pat(self) -> None:
        """The admin's Personal Access Token: the stored one while it is valid, else a new one (Label Studio keeps
        one valid token per user: any other is revoked first)."""
        if self.pat and requests.post(f"{self.url}/api/token/refresh/", json={"refresh": self.pat},
                                      timeout=30).status_code == 200:
            return
        for listed in self._admin_call("GET", "/api/token/").json():
            self._admin_call("POST", "/api/token/blacklist/", json={"refresh": listed["token"]})
        self._set_pat(self._admin_call("POST", "/api/token/").json()["token"])

    # ---- lifecycle

    def environment(self, port: int) -> dict[str, str]:
        home = self.data_dir / "home"
        for sub in ("", ".cache", ".config", ".local/share"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env = _clean_env(
            {
                "HOME": home,
                "XDG_CACHE_HOME": home / ".cache",
                "XDG_CONFIG_HOME": home / ".config",
                "XDG_DATA_HOME": home / ".local/share",
                "PYTHONUNBUFFERED": "1",  # the "Starting development server at ..." line must reach the log
                "LABEL_STUDIO_USERNAME": self.username,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.legacy_token,
                "LABEL_STUDIO_BASE_DATA_DIR": self.data_dir,
                # Label Studio tells ML backends (/setup "hostname") where to reach it; default: http://localhost
                "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}",
                "SECRET_KEY": self._secret_key,
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "ML_BLOCK_LOCAL_IP": "false",
                "USE_DEFAULT_BANNED_SUBNETS": "false",
            }
        )
        # get_env() also reads unprefixed names (HOST, PORT, USERNAME, ...): the ones above win, but drop the
        # plain ones a shell may carry so that they cannot leak in.
        for name in ("PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "DEBUG"):
            env.pop(name, None)
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env

    def start(self, timeout: float = 180) -> LabelStudioServer:
        if self.process is not None and self.process.poll() is None:
            return self
        if self.executable is None:
            self.executable = ensure_label_studio()
        started = time.monotonic()
        database = self.data_dir / TEMPLATE_DB
        template = template_db(self.executable.parent.parent)
        if self.use_template and not database.exists() and template.exists():
            shutil.copyfile(template, database)
        deadline = started + timeout
        attempts = []
        for _attempt in range(5):
            port = free_port()
            outcome, port_problem = self._start_once(port, deadline)
            if outcome == "ready":
                self.startup_seconds = round(time.monotonic() - started, 1)
                _running.add(self)
                return self
            attempts.append(f"port {port}: {outcome}")
            if not port_problem or time.monotonic() >= deadline:
                break  # only a busy port is worth another attempt
        raise RuntimeError(
            f"Label Studio did not start ({'; '.join(attempts)}); last lines of {self.log_path}:\n"
            f"{_tail(self.log_path)}"
        )

    def _start_once(self, port: int, deadline: float) -> tuple[str, bool]:
        """('ready', False), or why this attempt failed (after stopping it) and whether the port was the cause."""
        cmd = [
            str(self.executable), "start", "--no-browser",
            "--internal-host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(self.data_dir),
            *(["--enable-legacy-api-token"] if self.legacy_token_flag else []),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} $ {' '.join(cmd)}\n".encode())
            offset = log.tell()
            self.process = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                env=self.environment(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals it and any child
                preexec_fn=_set_parent_death_signal if sys.platform.startswith("linux") else None,
            )
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            output = self._read_log(offset)
            exited = self.process.poll() is not None
            moved = _MOVED_RE.findall(output)
            if moved:  # "Port N is in use. Trying to start at N+1": LABEL_STUDIO_HOST would be wrong, retry
                self.stop()
                return f"port busy, Label Studio moved to {int(moved[-1])}", True
            if exited:
                code = self.process.returncode
                self.stop()
                if _PORT_TAKEN in output:
                    return "port taken before Label Studio bound it", True
                return f"exited with code {code}", False
            bound = _STARTING_RE.findall(output)
            if bound and int(bound[-1]) != port:
                self.stop()
                return f"bound {int(bound[-1])} instead", True
            try:
                admin = self._is_ready(url) if bound else None
            except PermissionError as exc:
                self.stop()
                return str(exc), False
            if admin is not None:
                self.port, self.url, self.admin = port, url, admin
                self._ensure_pat()
                self.jwt_settings()
                self.client = LabelStudioClient(url, self.token)
                return "ready", False
            time.sleep(0.3)
        self.stop()
        return "not ready in time", False

    def _read_log(self, offset: int) -> bytes:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return b""

    def _is_ready(self, url: str) -> requests.Session | None:
        """The admin's session once the server answers; logging in with the admin's password proves it is ours."""
        try:
            health = requests.get(url + "/health", timeout=2)
            if health.status_code != 200 or health.json().get("status") != "UP":
                return None
        except (requests.RequestException, ValueError):
            return None
        return self.login(url)

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after 10 s."""
        process, self.process = self.process, None
        _running.discard(self)
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; make sure nothing else of its group survives
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            break
        if process.poll() is None:
            process.wait(timeout=5)
        for session in (self.client.session if self.client is not None else None, self.admin):
            if session is not None:
                session.close()

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    # ---- REST helpers, forwarded to the client

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and hasattr(LabelStudioClient, name):
            client = self.__dict__.get("client")
            if client is None:
                raise RuntimeError(f"{name}(): the Label Studio server is not started")
            return getattr(client, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"LabelStudioServer(url={self.url!r}, data_dir={str(self.data_dir)!r})"


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A started Label Studio server (installed on first use), shared by the whole test session."""
    executable = ensure_label_studio()
    with LabelStudioServer(tmp_path_factory.mktemp("label-studio"), executable=executable) as server:
        yield server


def _main(argv: list[str]) -> int:
    """python tests/label_studio_server.py [--check] [VENV]: install (or reuse) Label Studio and print its executable;
    with --check, also start a server on a throwaway data dir and stop it (scripts/lock.sh checks a new lock so)."""
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    t0 = time.monotonic()
    executable = ensure_label_studio(Path(args[0]) if args else None)
    print(executable, f"{time.monotonic() - t0:.1f} s")
    if check:
        import tempfile

        with tempfile.TemporaryDirectory() as data, LabelStudioServer(Path(data), executable=executable) as server:
            print(f"Label Studio {LABEL_STUDIO_VERSION} answered at {server.url} after {server.startup_seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
