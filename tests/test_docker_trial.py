"""The container trial: the project's image built from docker/Dockerfile and run for real, as its users run it.

Run by scripts/docker-trial.sh, which provides a Docker engine and a stand-in base image (no registry is reachable
here) and sets CLASSIE_DOCKER_TRIAL=1; skipped otherwise (a cold build compiles scikit-learn: ~10 minutes here). The
engine has no bridge network, so containers use the host's network and reach what the tests start on loopback.
Every figure measured goes to test-artifacts/docker-trial.json.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml

from conftest import EXAMPLE, ROOT, example_rows, heartbeat, jsonl, pushed_count, write_assets
from label_studio_server import LABEL_STUDIO_VERSION, LabelStudioServer, ensure_label_studio, free_port

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.environ.get("CLASSIE_DOCKER_TRIAL") != "1",
                       reason="the container trial runs with scripts/docker-trial.sh (it builds the image)"),
]

BASE = os.environ.get("CLASSIE_TRIAL_BASE", "classie-standin/python:3.11-bookworm")
IMAGE = "classie-automl:trial"
LS_IMAGE = f"heartexlabs/label-studio:{LABEL_STUDIO_VERSION}"  # the name compose.yaml runs, built here
FIGURES = ROOT / "test-artifacts" / "docker-trial.json"
GRACE = 30  # compose.yaml's stop_grace_period for the worker
UID = "10001"


# ---------------------------------------------------------------------------------------------- docker, in short

def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)[:300]} -> {done.returncode}: {done.stderr[-3000:]}")
    return done


def inspect(container: str, template: str) -> str:
    return docker("inspect", "-f", template, container).stdout.strip()


def volume(name: str) -> Path:
    """A named volume, created fresh; its folder on this machine (the engine's data root), to read from here."""
    docker("volume", "rm", "-f", name)  # fails while a container (e.g. of a killed run) still uses it: stale state
    docker("volume", "create", name)
    return Path(docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).stdout.strip())


def remove(*containers: str) -> None:
    docker("rm", "-f", *containers, check=False)


def wait_for(check: Callable[[], object], timeout: float, what: str, container: str | None = None) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if container and inspect(container, "{{.State.Running}}") != "true" and not check():
            raise AssertionError(f"{container} exited ({inspect(container, '{{.State.ExitCode}}')}) before {what}:"
                                 f"\n{logs(container)[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s" + (f":\n{logs(container)[-3000:]}"
                                                                       if container else ""))
        time.sleep(0.25)


def logs(container: str) -> str:
    done = docker("logs", container, check=False)
    return done.stdout + done.stderr


def stop(container: str) -> tuple[float, int]:
    """`docker stop` with the worker's grace period: the seconds it took and the exit code."""
    started = time.monotonic()
    docker("stop", "-t", str(GRACE), container, timeout=GRACE + 30)
    return round(time.monotonic() - started, 2), int(inspect(container, "{{.State.ExitCode}}"))


def memory_mib(container: str) -> float:
    """The container's memory now, as `docker stats` reports it."""
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container, check=False).stdout
    found = re.match(r"\s*([\d.]+)\s*([KMG]i?B)", usage)
    if not found:
        return 0.0
    scale = {"KiB": 1 / 1024, "KB": 1 / 1024, "MiB": 1, "MB": 1, "GiB": 1024, "GB": 1024}[found.group(2)]
    return float(found.group(1)) * scale


# ------------------------------------------------------------------------------------------------ the images

@pytest.fixture(scope="session")
def figures() -> Iterator[dict]:
    found: dict = {"date": time.strftime("%Y-%m-%d"), "engine": docker("version", "-f", "{{.Server.Version}}").stdout
                   .strip(), "base": BASE}
    yield found
    FIGURES.parent.mkdir(exist_ok=True)
    earlier = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    FIGURES.write_text(json.dumps({**earlier, **found}, indent=1) + "\n")
    print(json.dumps(found, indent=1))


def build(dockerfile: str, tag: str, context: Path = ROOT) -> tuple[float, str]:
    """The classic builder (BuildKit's front end cannot be pulled here), the host's network (no bridge)."""
    started = time.monotonic()
    done = subprocess.run(["docker", "build", "--network", "host", "-f", str(context / dockerfile),
                           "--build-arg", f"PYTHON_IMAGE={BASE}", "-t", tag, str(context)],
                          capture_output=True, text=True, timeout=3600, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert done.returncode == 0, f"docker build {dockerfile} failed:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    return round(time.monotonic() - started, 1), done.stdout


@pytest.fixture(scope="session")
def image(figures: dict) -> str:
    seconds, output = build("docker/Dockerfile", IMAGE)
    deps_cached = bool(re.search(r"RUN bash scripts/setup.sh --deps-only\s*\n\s*---> Using cache", output))
    figures["build_seconds"] = {"first_this_run": seconds, "dependency_layer_was_cached": deps_cached}
    figures["image_mb"] = round(int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout) / 1e6, 1)
    return IMAGE


def test_a_code_change_rebuilds_only_the_layers_after_the_dependencies(image: str, figures: dict) -> None:
    """The build context copied with one module and the README changed: the ~10 minute dependency layer comes from
    the cache (the trial found a README edit recompiling it)."""
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
        for name in filter(None, files.stdout.split("\0")):
            if (ROOT / name).is_file():
                (context / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, context / name)
        for name in ("service/__init__.py", "README.md"):
            with (context / name).open("a") as changed:
                changed.write(f"\n# changed for the trial at {time.time()}\n")
        seconds, output = build("docker/Dockerfile", f"{IMAGE}-changed", context)
    docker("image", "rm", f"{IMAGE}-changed", check=False)
    assert re.search(r"RUN bash scripts/setup.sh --deps-only\s*\n\s*---> Using cache", output), output[-3000:]
    figures["build_seconds"]["after_a_code_and_readme_change"] = seconds


def test_the_image_is_what_the_dockerfile_says(image: str) -> None:
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", image).stdout)
    assert config["User"] == f"{UID}:{UID}" and config["Entrypoint"] == ["tini", "--", "classie-automl"]
    assert config["Cmd"] == ["run"] and "/var/lib/classie" in config["Volumes"]
    assert config["Healthcheck"]["Test"] == ["CMD", "classie-automl", "health"]
    done = docker("run", "--rm", "--network", "host", image, "--help")
    assert "AutoML pre-annotation" in done.stdout
    # No compiler, no pip cache, no test tools in the runtime stage.
    probe = docker("run", "--rm", "--entrypoint", "bash", image, "-c",
                   "command -v gcc || true; ls /root/.cache/pip 2>/dev/null || true; "
                   "/app/.venv/bin/python -c 'import pytest' 2>&1 || true")
    assert "gcc" not in probe.stdout and "No module named 'pytest'" in probe.stdout, probe.stdout


# ------------------------------------------------------------------------ the worker on the bundled example

WORKER = "trial-worker"


@pytest.fixture(scope="module")
def demo(image: str, figures: dict) -> Iterator[Path]:
    """The worker container on the bundled example, as the README's demo trains it (budget 240 s): the files
    platform from examples/ukcat/config.toml, the state in a named volume; its first cycle, measured."""
    remove(WORKER)  # first: the volume of a container left by an interrupted run cannot be removed
    state = volume("trial-state")
    metrics = free_port()
    started = time.monotonic()
    docker("run", "-d", "--name", WORKER, "--network", "host", "-v", "trial-state:/var/lib/classie",
           "-e", "CLASSIE_CONFIG=/app/examples/ukcat/config.toml", "-e", f"CLASSIE_WORKER__METRICS_PORT={metrics}",
           "--stop-timeout", str(GRACE), image)
    wait_for(lambda: heartbeat(state), 120, "first heartbeat", WORKER)
    figures["start_to_first_heartbeat_seconds"] = round(time.monotonic() - started, 2)
    wait_for(lambda: heartbeat(state).get("phase") == "training", 300, "training", WORKER)
    peak = 0.0
    while heartbeat(state).get("phase") in ("training", "pulling", "starting"):
        peak = max(peak, memory_mib(WORKER))
        assert inspect(WORKER, "{{.State.Running}}") == "true", logs(WORKER)[-3000:]
        time.sleep(2)
    wait_for(lambda: heartbeat(state).get("phase") == "idle" and heartbeat(state).get("last_cycle") == "ok", 600,
             "the first cycle's end", WORKER)
    figures["worker_memory_mib_during_training_peak"] = round(peak, 0)
    figures["first_cycle_seconds"] = round(time.monotonic() - started, 1)
    yield state
    remove(WORKER)


def test_the_worker_pre_annotates_the_example_and_is_healthy_as_uid_10001(demo: Path, figures: dict) -> None:
    output = jsonl(demo / "preannotations.jsonl")
    with (EXAMPLE / "test.csv").open(encoding="utf-8") as f:
        held_out = {row["id"] for row in csv.DictReader(f)}
    assert {r["asset_id"] for r in output} == held_out and {r["model_version"] for r in output} == {"v1"}
    listing = docker("exec", WORKER, "classie-automl", "models").stdout
    assert re.search(r"^v1\s+current", listing, re.M), listing
    assert docker("exec", WORKER, "id", "-u").stdout.strip() == UID
    assert {line.split()[1] for line in docker("top", WORKER, "-o", "pid,uid").stdout.splitlines()[1:]} == {UID}
    assert (demo / "models" / "v0001").stat().st_uid == int(UID)
    started = time.monotonic()
    wait_for(lambda: inspect(WORKER, "{{.State.Health.Status}}") == "healthy", 120, "a healthy HEALTHCHECK", WORKER)
    figures["healthy_after_seconds_from_first_cycle_end"] = round(time.monotonic() - started, 1)


def test_docker_stop_while_idle_exits_0_at_once(demo: Path, figures: dict) -> None:
    took, code = stop(WORKER)
    assert code == 0, logs(WORKER)[-2000:]
    assert heartbeat(demo)["phase"] == "stopped"
    figures.setdefault("stop_seconds", {})["idle"] = took


# ------------------------------------------------------------------------------- docker stop in every phase

@pytest.fixture(scope="module")
def small_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 labelled charities and 400 to pre-annotate (as tests/test_container_stop.py), on this machine."""
    folder = tmp_path_factory.mktemp("stop-project")
    unlabelled = [(f"u{i}", text, "") for i, (_, text, _) in enumerate(example_rows("test.csv", 400))]
    write_assets(folder / "assets.csv", example_rows("train.csv", 1000) + unlabelled)
    folder.chmod(0o755)
    (folder / "assets.csv").chmod(0o644)
    return folder


def run_small(image: str, project: Path, name: str) -> None:
    remove(name)
    docker("run", "-d", "--name", name, "--network", "host", "-v", "trial-stop:/var/lib/classie",
           "-v", f"{project}:/data:ro", "-e", "CLASSIE_PLATFORM=files", "-e", "CLASSIE_FILES__ASSETS=/data/assets.csv",
           "-e", "CLASSIE_TAXONOMY__PATH=/app/examples/ukcat/taxonomy.csv", "-e", "CLASSIE_LOG_FORMAT=json",
           "-e", "CLASSIE_MODEL__BUDGET_SECONDS=30", "-e", "CLASSIE_MODEL__MAX_EVALUATIONS=2",
           "-e", "CLASSIE_MODEL__CV_FOLDS=3", "-e", "CLASSIE_WORKER__BATCH_SIZE=2",
           "-e", "CLASSIE_WORKER__INTERVAL_SECONDS=3600", "-e", "CLASSIE_WORKER__METRICS_PORT=",
           "--stop-timeout", str(GRACE), image)


def test_docker_stop_during_training_and_during_a_push_exits_0_in_time_and_loses_nothing(
        image: str, small_project: Path, figures: dict) -> None:
    state = volume("trial-stop")
    stops = figures.setdefault("stop_seconds", {})
    try:
        run_small(image, small_project, "trial-stop-1")  # 1. during the training: abandoned, nothing of it kept
        wait_for(lambda: heartbeat(state).get("phase") == "training", 240, "training", "trial-stop-1")
        time.sleep(1.0)
        stops["training"], code = stop("trial-stop-1")
        assert code == 0 and "training abandoned" in logs("trial-stop-1"), logs("trial-stop-1")[-2000:]
        assert not list((state / "models").glob("v*")) and heartbeat(state)["phase"] == "stopped"

        run_small(image, small_project, "trial-stop-2")  # 2. while pushing: the batch in flight ends
        wait_for(lambda: heartbeat(state).get("phase") == "pre-annotating", 300, "pre-annotating", "trial-stop-2")
        stops["pushing"], code = stop("trial-stop-2")
        assert code == 0 and "left for the next run" in logs("trial-stop-2"), logs("trial-stop-2")[-2000:]
        written = jsonl(state / "preannotations.jsonl")
        assert 0 < len(written) < 400 and pushed_count(state) == len(written)

        run_small(image, small_project, "trial-stop-3")  # 3. again: the rest, each asset once, then idle
        wait_for(lambda: heartbeat(state).get("phase") == "idle", 300, "idle", "trial-stop-3")
        written = jsonl(state / "preannotations.jsonl")
        assert sorted(r["asset_id"] for r in written) == sorted(f"u{i}" for i in range(400))
        assert {r["model_version"] for r in written} == {"v1"}
        _, code = stop("trial-stop-3")
        assert code == 0
    finally:
        remove("trial-stop-1", "trial-stop-2", "trial-stop-3")
    assert stops["training"] < GRACE and stops["pushing"] < GRACE, stops


# ------------------------------------------------------------------------------------------- serve, from the host

def test_serve_answers_health_and_an_authenticated_predict_from_the_host(image: str, demo: Path) -> None:
    """As the README runs it: on a network of its own with the port published (`-p`), which only a server bound to
    0.0.0.0 answers through."""
    port, token = free_port(), "trial-token-0123456789"
    remove("trial-serve")
    if docker("network", "inspect", "trial-bridge", check=False).returncode != 0:
        docker("network", "create", "trial-bridge")  # the engine's default bridge is off (--bridge=none)
    try:
        docker("run", "-d", "--name", "trial-serve", "--network", "trial-bridge", "-p", f"{port}:9090",
               "-v", "trial-state:/var/lib/classie",
               "-e", "CLASSIE_CONFIG=/app/examples/ukcat/config.toml", "-e", f"CLASSIE_API_TOKEN={token}",
               "-e", "CLASSIE_HEALTH_URL=http://127.0.0.1:9090/health", image, "serve", "--host", "0.0.0.0")
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url + "/health"), 60, "/health", "trial-serve")
        assert requests.post(url + "/predict", json={"tasks": []}, timeout=10).status_code == 401
        answer = requests.post(url + "/predict", headers={"Authorization": f"Bearer {token}"}, timeout=60,
                               json={"tasks": [{"id": 1, "data": {"text": "A food bank for homeless families"}}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["model_version"] == "v1"
        wait_for(lambda: inspect("trial-serve", "{{.State.Health.Status}}") == "healthy", 90, "healthy",
                 "trial-serve")
        took, code = stop("trial-serve")
        assert code == 0 and took < 10
    finally:
        remove("trial-serve")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# ------------------------------------------------------------------------------------- Kili and Label Studio

def test_the_worker_container_pushes_to_the_emulated_kili(image: str, tmp_path: Path) -> None:
    from kili_emulator import KiliEmulator
    from kili_project import fill, interface, ukcat_taxonomy

    taxonomy = ukcat_taxonomy()
    key = "trial-key-0123"
    with KiliEmulator(api_key=key, project_id="p1", json_interface=interface(taxonomy)) as emulator:
        unlabelled = fill(emulator, taxonomy, labelled=60, unlabelled=30)
        remove("trial-kili")
        volume("trial-kili")
        docker("run", "--name", "trial-kili", "--network", "host", "-v", "trial-kili:/var/lib/classie",
               "-e", "CLASSIE_PLATFORM=kili", "-e", "CLASSIE_KILI__PROJECT_ID=p1",
               "-e", f"KILI_API_ENDPOINT={emulator.endpoint}", "-e", f"KILI_API_KEY={key}",
               "-e", "CLASSIE_MODEL__MIN_EXAMPLES=100000", "-e", "CLASSIE_WORKER__METRICS_PORT=", image,
               "run", "--once", timeout=600)
        remove("trial-kili")
        landed = Counter(lb["assetId"] for lb in emulator.labels
                         if lb["labelType"] == "PREDICTION" and lb["modelName"] == "classie-automl-v1")
    assert landed == Counter(unlabelled)


def test_the_worker_container_pushes_to_a_real_label_studio(image: str, tmp_path: Path) -> None:
    rows = example_rows("train.csv", 60) + [(i, t, "") for i, t, _ in example_rows("test.csv", 30)]
    write_assets(tmp_path / "assets.csv", rows)
    tmp_path.chmod(0o755)
    (tmp_path / "assets.csv").chmod(0o644)
    with LabelStudioServer(tmp_path / "ls", executable=ensure_label_studio()) as ls:
        common = ["--network", "host", "-v", f"{tmp_path}:/data:ro", "-e", f"LABEL_STUDIO_URL={ls.url}",
                  "-e", f"LABEL_STUDIO_API_KEY={ls.token}", "-e", "CLASSIE_TAXONOMY__PATH=/app/examples/ukcat/"
                  "taxonomy.csv", "-e", "CLASSIE_TAXONOMY__FACET_ROOTS={\"population\": [\"BE\"]}"]
        init = docker("run", "--rm", *common, image, "label-studio-init", "--assets", "/data/assets.csv",
                      "--title", "trial", timeout=300)
        project = re.search(r"^project (\d+)$", init.stdout, re.M).group(1)
        remove("trial-ls")
        volume("trial-ls")
        docker("run", "--name", "trial-ls", *common, "-v", "trial-ls:/var/lib/classie",
               "-e", "CLASSIE_PLATFORM=label-studio", "-e", f"CLASSIE_LABEL_STUDIO__PROJECT_ID={project}",
               "-e", "CLASSIE_MODEL__MIN_EXAMPLES=100000", "-e", "CLASSIE_WORKER__METRICS_PORT=", image,
               "run", "--once", timeout=600)
        remove("trial-ls")
        predictions = ls.client.predictions(int(project))
    assert len(predictions) == 30 and {p["model_version"] for p in predictions} == {"v1"}


# ------------------------------------------------------------------------------------------ the compose trial

def compose_for_docker_compose_1(path: Path) -> dict:
    """compose.yaml as docker-compose 1.29 (Debian's) reads it: `env_file` entries as paths (1.29 has no `path`/
    `required` form; a file that does not exist is left out, as Compose v2 does with `required: false`) and no
    top-level `name` (given with -p instead). Everything else as written."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec.pop("name", None)
    for service in spec["services"].values():
        if "env_file" in service:
            entries = [e if isinstance(e, str) else e["path"] for e in service["env_file"]]
            service["env_file"] = [str(path.parent / e) for e in entries if (path.parent / e).exists()]
        build = service.get("build")
        if isinstance(build, dict):
            build["context"] = str((path.parent / build["context"]).resolve())
    return spec


def test_compose_brings_up_label_studio_the_api_and_the_worker(image: str, figures: dict, tmp_path: Path) -> None:
    seconds, _ = build("docker/label-studio.Dockerfile", LS_IMAGE)
    figures["label_studio_image"] = {"build_seconds": seconds, "mb": round(int(docker(
        "image", "inspect", "-f", "{{.Size}}", LS_IMAGE).stdout) / 1e6, 1)}
    docker("tag", image, "classie-automl:local")  # what compose.yaml's build would make, built above
    spec = compose_for_docker_compose_1(ROOT / "docker" / "compose.yaml")
    file = tmp_path / "compose.yaml"
    file.write_text(yaml.safe_dump(spec))
    project = ["docker-compose", "-p", "classie-trial", "-f", str(file)]

    def compose(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*project, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "COMPOSE_DOCKER_CLI_BUILD": "0"})

    compose("down", "-v")
    started = time.monotonic()
    up = compose("up", "-d", "--no-build")  # returns once init has finished: the worker waits for it
    timings = figures.setdefault("compose_seconds", {})
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        timings["up_returned_init_done"] = round(time.monotonic() - started, 1)
        assert _init_done(compose)
        # The project init made, as it prints it last (compose no longer assumes it is 1).
        project_id = int(re.findall(r"project (\d+)\s*$", compose("logs", "--no-color", "init").stdout, re.M)[-1])
        ls_url, token = "http://127.0.0.1:8080", "0123456789abcdef0123456789abcdef01234567"  # example.env's
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        wait_for(lambda: _answers(ls_url + "/health"), 300, "Label Studio")
        tasks = lambda: session.get(f"{ls_url}/api/predictions", params={"project": project_id},  # noqa: E731
                                    timeout=30).json()
        wait_for(lambda: len(tasks()) >= 821, 900, "the worker's v1 pre-annotations")
        timings["up_to_v1_pushed"] = round(time.monotonic() - started, 1)
        # A labeller annotates a task (as another was annotated): Label Studio's webhook reaches the API, which
        # runs a cycle on the shared state; one change meets the retrain rule (retrain_min_changes = 1): v2.
        tasks = session.get(f"{ls_url}/api/tasks", timeout=60,
                            params={"project": project_id, "page_size": 100, "fields": "all"}).json()
        tasks = tasks.get("tasks") if isinstance(tasks, dict) else tasks
        labelled = next(t for t in tasks if t.get("annotations"))
        target = next(t for t in tasks if not t.get("annotations"))
        made = session.post(f"{ls_url}/api/tasks/{target['id']}/annotations", timeout=30,
                            json={"result": labelled["annotations"][0]["result"]})
        assert made.status_code == 201, made.text
        annotated = time.monotonic()
        # Whichever comes first trains v2, once: the API's webhook cycle or the worker's next one (they share the
        # state folder's cycle lock; the other then finds v2 and trains nothing).
        both = lambda: logs("classie-trial_api_1") + logs("classie-trial_worker_1")  # noqa: E731
        wait_for(lambda: "1 label change(s), trained v2" in both(), 600, "the webhook's or the worker's cycle: v2")
        timings["annotation_to_v2_trained"] = round(time.monotonic() - annotated, 1)
        assert "v2 promoted" in both() and both().count("trained v2") == 1
    finally:
        logs_text = compose("logs", "--no-color").stdout
        (tmp_path / "compose.log").write_text(logs_text)
        down = compose("down")
    assert down.returncode == 0, down.stderr[-2000:]
    left = docker("volume", "ls", "-q").stdout.split()
    assert {"classie-trial_classie-state", "classie-trial_label-studio-data"} <= set(left), left
    figures["compose"] = "docker-compose 1.29 on compose.yaml as compose_for_docker_compose_1 reads it"


def _init_done(compose: Callable[..., subprocess.CompletedProcess]) -> bool:
    done = compose("ps", "init")
    return "Exit 0" in done.stdout


# ------------------------------------------------------------------------------------------------ bad input

def bad_run(image: str, *args: str) -> subprocess.CompletedProcess:
    remove("trial-bad")
    done = docker("run", "--name", "trial-bad", "--network", "host", *args, image, check=False, timeout=120)
    done.stdout, done.stderr = done.stdout, logs("trial-bad")
    remove("trial-bad")
    return done


def test_bad_input_in_a_container_exits_2_with_the_fix_in_its_logs(image: str, tmp_path: Path) -> None:
    volume("trial-bad-state")
    state = ["-v", "trial-bad-state:/var/lib/classie", "-e", "CLASSIE_WORKER__METRICS_PORT="]
    cases = {
        "no platform settings": (state, ["--assets", "Fix"]),
        "a missing secret file": ([*state, "-e", "KILI_API_KEY_FILE=/run/secrets/kili_api_key"],
                                  ["/run/secrets/kili_api_key"]),
        "a read-only volume": (["-v", "trial-bad-state:/var/lib/classie:ro", "-e", "CLASSIE_WORKER__METRICS_PORT="],
                               ["cannot write", "Fix"]),
    }
    (tmp_path / "taxonomy-folder").mkdir()
    cases["a taxonomy mount that is a folder"] = (
        [*state, "-v", f"{tmp_path / 'taxonomy-folder'}:/etc/classie/taxonomy.csv:ro", "-e", "CLASSIE_PLATFORM=files",
         "-e", "CLASSIE_FILES__ASSETS=/app/examples/ukcat/assets.csv",
         "-e", "CLASSIE_TAXONOMY__PATH=/etc/classie/taxonomy.csv"], ["/etc/classie/taxonomy.csv", "Fix"])
    found = {}
    for case, (args, words) in cases.items():
        done = bad_run(image, *args)
        found[case] = done.returncode
        assert done.returncode == 2, f"{case}: exit {done.returncode}\n{done.stderr[-2000:]}"
        assert all(w in done.stderr for w in words) and "Traceback" not in done.stderr, f"{case}:\n{done.stderr}"
    # A volume owned by another uid: state an earlier image's user (1234) left. It must hold a file: Docker gives an
    # empty named volume the image folder's owner at every mount, so an empty one mends itself (checked first).
    volume("trial-bad-owner")
    as_root = ["run", "--rm", "-u", "0", "--entrypoint", "sh", "-v", "trial-bad-owner:/var/lib/classie", image, "-c"]
    docker(*as_root, "chown 1234:1234 /var/lib/classie")
    assert docker(*as_root, "stat -c %u /var/lib/classie").stdout.strip() == UID  # empty: Docker's copy-up re-owns
    docker(*as_root, "touch /var/lib/classie/state.sqlite && chown -R 1234:1234 /var/lib/classie")
    done = bad_run(image, "-v", "trial-bad-owner:/var/lib/classie", "-e", "CLASSIE_WORKER__METRICS_PORT=",
                   "-e", "CLASSIE_CONFIG=/app/examples/ukcat/config.toml")
    assert done.returncode == 2 and "chown -R 10001:10001" in done.stderr, done.stderr[-2000:]


def test_a_restart_policy_on_exit_2(image: str, figures: dict) -> None:
    """What `restart: unless-stopped` (compose.yaml) does with a worker that exits 2 on a bad setting: Docker restarts
    it, each time after twice the delay before (from 0.1 s up to a minute), so it does not spin; the container shows
    `Restarting` and its log the message with the fix, once per start."""
    remove("trial-restart")
    docker("run", "-d", "--name", "trial-restart", "--network", "host", "--restart", "unless-stopped",
           "-e", "CLASSIE_WORKER__METRICS_PORT=", image)
    try:
        time.sleep(90)
        restarts = int(inspect("trial-restart", "{{.RestartCount}}"))
        messages = logs("trial-restart").count("error: ")
    finally:
        remove("trial-restart")
    figures["unless_stopped_restarts_in_90_s_after_exit_2"] = restarts
    assert 3 <= restarts <= 12 and messages >= restarts, (restarts, messages)
    # The alternative: `on-failure:3` gives up after three restarts and leaves the container exited with code 2.
    remove("trial-restart")
    docker("run", "-d", "--name", "trial-restart", "--network", "host", "--restart", "on-failure:3",
           "-e", "CLASSIE_WORKER__METRICS_PORT=", image)
    try:
        wait_for(lambda: inspect("trial-restart", "{{.State.Status}}") == "exited"
                 and inspect("trial-restart", "{{.RestartCount}}") == "3", 60, "on-failure:3 to give up")
        assert inspect("trial-restart", "{{.State.ExitCode}}") == "2"
    finally:
        remove("trial-restart")
