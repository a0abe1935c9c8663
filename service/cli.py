"""The `classie-automl` command line: train, predict, evaluate, run (once or polling), models."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import requests
import typer

from automl.taxonomy import TaxonomyError
from connectors.base import Connector, SkipLog
from connectors.files import AssetFileError, FilesConnector, FilesSettings, read_assets
from connectors.kili import KiliError
from connectors.label_studio import LabelStudioError
from service.config import ConfigError, Settings, load_secret_files, load_settings
from service.health import Heartbeat, check_heartbeat, check_url
from service.logs import setup_logging
from service.registry import ModelRegistry, RegistryError
from service.state import StateStore
from service.worker import CycleReport, StopRequested, TrainingFailed, Worker

log = logging.getLogger("classie_automl")
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="AutoML pre-annotation for hierarchical text labelling.")

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", envvar="CLASSIE_CONFIG",
                                                   help="TOML configuration file (else CLASSIE_CONFIG).")]
PlatformOpt = Annotated[Optional[str], typer.Option("--platform", help="files, kili or label-studio.")]
UrlOpt = Annotated[Optional[str], typer.Option("--url", help="Label Studio's URL (else LABEL_STUDIO_URL).")]
ProjectOpt = Annotated[Optional[str], typer.Option("--project-id", help="Project on the platform (kili).")]
AssetsOpt = Annotated[Optional[Path], typer.Option("--assets", help="Assets file (CSV or JSONL), platform files.")]
TaxonomyOpt = Annotated[Optional[Path], typer.Option("--taxonomy", help="Taxonomy CSV.")]
StateOpt = Annotated[Optional[Path], typer.Option("--state", help="State folder (models, outputs, logs).")]
BudgetOpt = Annotated[Optional[int], typer.Option("--budget", help="Total search time per training, seconds.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", help="Pre-annotations JSONL (platform files).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def _settings(config, platform, assets, taxonomy, state, budget, output=None, project_id=None,
              url=None) -> Settings:
    overrides: dict = {}
    if url:
        overrides.setdefault("label_studio", {})["url"] = url
    if platform:
        overrides["platform"] = platform
    if state:
        overrides["state_dir"] = str(state)
    if assets:
        overrides.setdefault("files", {})["assets"] = str(assets)
    if output:
        overrides.setdefault("files", {})["output"] = str(output)
    if taxonomy:
        overrides.setdefault("taxonomy", {})["path"] = str(taxonomy)
    if budget is not None:
        overrides.setdefault("model", {})["budget_seconds"] = budget
    settings = load_settings(config, overrides)
    if project_id:  # the platform (flag, file or environment) says which section it belongs to
        if settings.platform == "label-studio":
            if not project_id.isdigit():
                raise ConfigError(f"--project-id {project_id!r}: Label Studio project ids are numbers.")
            settings.label_studio.project_id = int(project_id)
        else:
            settings.kili.project_id = project_id
    return settings


def _connector(settings: Settings) -> Connector:
    if settings.platform == "kili":
        if not settings.kili.project_id:
            raise ConfigError("platform kili needs --project-id (or [kili] project_id).")
        from connectors.kili import KiliConnector, KiliSettings

        return KiliConnector(KiliSettings(
            project_id=settings.kili.project_id, endpoint=settings.kili.endpoint,
            model_name_prefix=settings.kili.model_name_prefix, taxonomy=settings.taxonomy.path,
            push_batch=settings.kili.push_batch,
        ))
    if settings.platform == "label-studio":
        ls = settings.label_studio
        if ls.project_id is None:
            raise ConfigError("platform label-studio needs --project-id (or [label_studio] project_id).")
        from connectors.label_studio import LabelStudioConnector, LabelStudioSettings

        return LabelStudioConnector(LabelStudioSettings(project_id=ls.project_id, url=ls.url,
                                                        earlier_versions=ls.earlier_versions,
                                                        push_batch=ls.push_batch))
    missing = [name for name, value in (("--assets / [files] assets", settings.files.assets),
                                        ("--taxonomy / [taxonomy] path", settings.taxonomy.path)) if value is None]
    if missing:
        raise ConfigError(f"platform files needs {' and '.join(missing)}. Fix: pass the flag or set it in --config.")
    f = settings.files
    return FilesConnector(FilesSettings(
        assets=f.assets, taxonomy=settings.taxonomy.path, output=settings.output_path, id_column=f.id_column,
        text_column=f.text_column, labels_column=f.labels_column, label_separator=f.label_separator,
        encoding=f.encoding, facet_roots=settings.taxonomy.facet_roots, default_facet=settings.taxonomy.default_facet,
    ))


def _setup_logging(verbose: bool) -> None:
    setup_logging(verbose)  # plain or JSON lines, by CLASSIE_LOG_FORMAT


def _worker(settings: Settings, stop: threading.Event | None = None, heartbeat: Heartbeat | None = None) -> Worker:
    return Worker(settings, _connector(settings), ModelRegistry(settings.state_dir / "models"),
                  StateStore(settings.state_dir / "state.sqlite3"), stop, heartbeat)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _guard(func):
    """Known input problems end with their message and exit code 2, not a traceback."""
    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ConfigError, TaxonomyError, AssetFileError, RegistryError, KiliError, LabelStudioError) as exc:
            _fail(exc)
    return run


def _print_metrics(title: str, metrics: list[dict]) -> None:
    typer.echo(title)
    typer.echo(f"  {'facet':<12}{'level':>5}{'labels':>8}{'micro P':>9}{'micro R':>9}{'micro F1':>10}{'macro F1':>10}")
    for m in metrics:
        typer.echo(f"  {m['facet']:<12}{m['level']:>5}{m['n_labels']:>8}{m['micro_precision']:>9.3f}"
                   f"{m['micro_recall']:>9.3f}{m['micro_f1']:>10.3f}{m['macro_f1']:>10.3f}")


def _print_cycle(report: CycleReport) -> None:
    skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items()) or "none"
    typer.echo(f"pulled {report.pulled} assets: {report.labelled} labelled, {report.unlabelled} to pre-annotate;"
               f" skipped records: {skipped}")
    typer.echo(f"model {report.model_version}: " + (f"trained ({report.train_reason})" if report.trained
                                                    else "current, no training needed"))
    typer.echo(f"pre-annotations: {report.written} written, {report.already} already there for this version"
               + (f", {report.abandoned} left for the next run (stop requested)" if report.abandoned else ""))
    typer.echo("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items()))
    if report.trained:
        _print_metrics("held-out quality (cross-validated on the labelled assets):", report.heldout)


def _read_assets(settings: Settings, path: Path, taxonomy, skipped: SkipLog, require_labels: bool = False) -> list:
    """An assets file read with the [files] column settings; problems counted in `skipped`, then reported."""
    f = settings.files
    assets = list(read_assets(path, taxonomy, skipped, id_column=f.id_column, text_column=f.text_column,
                              labels_column=f.labels_column, label_separator=f.label_separator, encoding=f.encoding,
                              require_labels=require_labels))
    skipped.report(str(path))
    return assets


def _evaluate(settings: Settings, test: Path, json_out: Path | None) -> list[dict]:
    worker = _worker(settings)
    current = worker.registry.current()
    if current is None:
        raise RegistryError(f"no model in {worker.registry.root}. Fix: run `classie-automl train` first.")
    model = worker.registry.load(current)
    skipped = SkipLog()
    assets = _read_assets(settings, test, model.taxonomy, skipped, require_labels=True)
    if not assets:
        raise AssetFileError(f"{test}: no labelled asset to evaluate on. Fix: give a file with labels.")
    scores = [s.to_dict() for s in model.score([a.text for a in assets], [set(a.labels) for a in assets])]
    _print_metrics(f"model {current.name} on {len(assets)} labelled assets of {test.name}:", scores)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(scores, indent=1), encoding="utf-8")
        typer.echo(f"wrote {json_out}")
    return scores


@app.command()
@_guard
def train(config: ConfigOpt = None, platform: PlatformOpt = None, assets: AssetsOpt = None,
          taxonomy: TaxonomyOpt = None, state: StateOpt = None, budget: BudgetOpt = None,
          project_id: ProjectOpt = None, url: UrlOpt = None, verbose: VerboseOpt = False) -> None:
    """Pull the labelled assets and train a new model version (always)."""
    _setup_logging(verbose)
    settings = _settings(config, platform, assets, taxonomy, state, budget, project_id=project_id, url=url)
    worker = _worker(settings)
    taxonomy = worker.pull(CycleReport())
    version = worker.train(taxonomy, worker.state.labelled_assets())
    typer.echo(f"model {version.name} trained on {version.n_train} labelled assets"
               f" in {version.summary.get('fit_seconds', 0):.0f} s")
    _print_metrics("held-out quality (cross-validated on the labelled assets):", version.metrics)


@app.command()
@_guard
def predict(config: ConfigOpt = None, platform: PlatformOpt = None, assets: AssetsOpt = None,
            taxonomy: TaxonomyOpt = None, state: StateOpt = None, output: OutputOpt = None,
            project_id: ProjectOpt = None, url: UrlOpt = None, verbose: VerboseOpt = False) -> None:
    """Pre-annotate the unlabelled assets with the current model (no training)."""
    _setup_logging(verbose)
    settings = _settings(config, platform, assets, taxonomy, state, None, output, project_id, url)
    worker = _worker(settings)
    current = worker.registry.current()
    if current is None:
        raise RegistryError(f"no model in {worker.registry.root}. Fix: run `classie-automl train` first.")
    report = CycleReport(model_version=current.name)
    worker.pull(report)
    worker.pre_annotate(worker.registry.load(current), current, report)
    typer.echo(f"model {current.name}: {report.written} pre-annotations written, {report.already} already there"
               f" ({settings.output_path})")


@app.command()
@_guard
def evaluate(test: Annotated[Path, typer.Option("--test", help="Labelled assets file to score against.")],
             json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the scores here.")] = None,
             config: ConfigOpt = None, platform: PlatformOpt = None, assets: AssetsOpt = None,
             taxonomy: TaxonomyOpt = None, state: StateOpt = None, verbose: VerboseOpt = False) -> None:
    """Score the current model on a labelled file: precision, recall, F1 per facet and level."""
    _setup_logging(verbose)
    settings = _settings(config, platform, assets, taxonomy, state, None)
    _evaluate(settings, test, json_out)


@app.command()
@_guard
def run(once: Annotated[bool, typer.Option("--once", help="One cycle, then exit.")] = False,
        config: ConfigOpt = None, platform: PlatformOpt = None, assets: AssetsOpt = None,
        taxonomy: TaxonomyOpt = None, state: StateOpt = None, budget: BudgetOpt = None,
        output: OutputOpt = None, project_id: ProjectOpt = None, url: UrlOpt = None,
        verbose: VerboseOpt = False) -> None:
    """Pull, train when the human labels changed, pre-annotate what is new; once, or every interval."""
    _setup_logging(verbose)
    settings = _settings(config, platform, assets, taxonomy, state, budget, output, project_id, url)
    stop = threading.Event()
    heartbeat = None if once else Heartbeat(settings.state_dir)
    if heartbeat is not None:
        heartbeat.beat("starting", force=True)
    worker = _worker(settings, stop, heartbeat)
    main_pid = os.getpid()

    def request_stop(signum, _frame):
        if os.getpid() != main_pid:
            # A forked helper (auto-sklearn's workers are stopped by signal): behave as if no handler were set.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop.set()
        log.info("received %s: stopping after the current batch (a training is abandoned)",
                 signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        if once:
            report = worker.run_once()
            _print_cycle(report)
            if settings.evaluation.test and not stop.is_set():
                _evaluate(settings, settings.evaluation.test, settings.state_dir / "evaluation.json")
            return
        while not stop.is_set():
            try:
                worker.run_once()
            except (TaxonomyError, AssetFileError, requests.RequestException, TrainingFailed) as exc:
                # Input being edited, or a platform still failing after the retries: the next cycle tries again.
                log.error("cycle failed: %s: %s (next try in %.0f s)", type(exc).__name__, exc,
                          settings.worker.interval_seconds)
                heartbeat.last_cycle = f"failed: {type(exc).__name__}: {exc}"[:500]
            next_cycle = time.monotonic() + settings.worker.interval_seconds
            while not stop.wait(max(0.0, min(30.0, next_cycle - time.monotonic()))):
                if time.monotonic() >= next_cycle:
                    break
                heartbeat.beat("idle")
    except StopRequested as exc:
        log.info("%s", exc)
    except (KiliError, LabelStudioError) as exc:
        _fail(exc)
    finally:
        if heartbeat is not None:
            heartbeat.beat("stopped", force=True)
    log.info("stopped")


@app.command()
@_guard
def serve(config: ConfigOpt = None, platform: PlatformOpt = None, assets: AssetsOpt = None,
          taxonomy: TaxonomyOpt = None, state: StateOpt = None, project_id: ProjectOpt = None, url: UrlOpt = None,
          host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 9090,
          verbose: VerboseOpt = False) -> None:
    """The HTTP API: /health, /setup, /predict, /webhook (schedules a background cycle), /metrics.
    Every endpoint but /health needs the token of CLASSIE_API_TOKEN (bearer, or basic auth)."""
    import uvicorn

    from service.api import ApiSettings, create_app

    _setup_logging(verbose)
    token = os.environ.get("CLASSIE_API_TOKEN", "")
    if not token:
        raise ConfigError("serve needs a token. Fix: set CLASSIE_API_TOKEN (callers send it as a bearer token).")
    settings = _settings(config, platform, assets, taxonomy, state, None, project_id=project_id, url=url)
    registry = ModelRegistry(settings.state_dir / "models")

    @functools.cache
    def connect() -> Worker:
        return Worker(settings, _connector(settings), registry, StateStore(settings.state_dir / "state.sqlite3"))

    try:
        connect()
    except (KiliError, LabelStudioError) as exc:
        # Predictions need only the registry: serve them, and connect again on the first webhook. (In compose,
        # the project is created after the API is up.) Configuration errors still stop here.
        log.warning("platform not usable yet (%s); /predict is served, webhooks will connect again", exc)
    a = settings.api
    api = create_app(ApiSettings(token=token, text_key=a.text_key, max_body_bytes=a.max_body_bytes,
                                 max_tasks=a.max_tasks, debounce_seconds=a.debounce_seconds),
                     registry, lambda: connect().run_once())
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it found: make that
    # one a no-op, so that a stopped server exits 0 (what `docker stop` and supervisors expect).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # log_config=None: uvicorn's own loggers go through ours (plain or JSON lines, one format per process).
    uvicorn.run(api, host=host, port=port, log_level="debug" if verbose else "info", log_config=None)
    log.info("stopped")


@app.command()
@_guard
def health(config: ConfigOpt = None, state: StateOpt = None,
           url: Annotated[Optional[str], typer.Option(
               "--url", envvar="CLASSIE_HEALTH_URL",
               help="Check this /health URL (the HTTP API) instead of the worker's heartbeat.")] = None) -> None:
    """Exit 0 when healthy, 1 when not (Docker's HEALTHCHECK): the polling worker's heartbeat is recent, or the
    API's /health answers 200."""
    if url:
        status = check_url(url)
    else:
        settings = _settings(config, None, None, None, state, None)
        status = check_heartbeat(settings.state_dir, settings.worker.stale_after_seconds)
    typer.echo(("healthy: " if status.healthy else "unhealthy: ") + status.message)
    raise typer.Exit(0 if status.healthy else 1)


@app.command()
@_guard
def models(config: ConfigOpt = None, state: StateOpt = None,
           promote: Annotated[Optional[int], typer.Option("--promote", help="Make version N current.")] = None
           ) -> None:
    """List model versions (current marked *), or promote one (rollback)."""
    settings = _settings(config, None, None, None, state, None)
    registry = ModelRegistry(settings.state_dir / "models")
    if promote is not None:
        registry.promote(promote)
    current = registry.current()
    for v in registry.versions():
        mark = "*" if current and v.number == current.number else " "
        f1 = " ".join(f"{m['facet']}/L{m['level']}={m['micro_f1']:.3f}" for m in v.metrics)
        typer.echo(f"{mark} {v.name:<6} {v.created_at}  trained on {v.n_train:>6}  held-out micro-F1 {f1}")


@app.command("label-studio-init")
@_guard
def label_studio_init(
        url: UrlOpt = None, taxonomy: TaxonomyOpt = None,
        assets: Annotated[Optional[Path], typer.Option(
            "--assets", help="Assets to import as tasks (CSV or JSONL); labelled ones with their labels.")] = None,
        title: Annotated[str, typer.Option("--title", help="Project title: found, else created.")] = "classie-automl",
        ml_backend_url: Annotated[Optional[str], typer.Option(
            "--ml-backend-url", help="The API's URL as Label Studio reaches it: connected as the ML backend.")] = None,
        webhook_url: Annotated[Optional[str], typer.Option(
            "--webhook-url", help="Webhook for annotation events (default: <ml-backend-url>/webhook).")] = None,
        wait: Annotated[float, typer.Option(
            "--wait", help="Seconds to wait for Label Studio, then for the API, to answer.")] = 120,
        config: ConfigOpt = None, verbose: VerboseOpt = False) -> None:
    """Set up a Label Studio project: labelling interface from the taxonomy, assets as tasks (human labels as
    annotations), the API as ML backend and a webhook carrying CLASSIE_API_TOKEN. Safe to rerun."""
    from automl.taxonomy import load_taxonomy
    from connectors.label_studio_setup import init_project

    _setup_logging(verbose)
    settings = _settings(config, None, assets, taxonomy, None, None, url=url)
    t, f = settings.taxonomy, settings.files
    if t.path is None:
        raise ConfigError("label-studio-init needs --taxonomy (or [taxonomy] path in --config).")
    tax = load_taxonomy(t.path, t.facet_roots, t.default_facet)
    typer.echo(f"taxonomy {t.path}: {len(tax)} codes, facets {', '.join(tax.facets)}")
    records = None
    if f.assets is not None:  # read before anything is created: a bad file stops here
        skipped = SkipLog()
        records = _read_assets(settings, f.assets, tax, skipped)
        typer.echo(f"assets {f.assets}: {len(records)} read, {sum(a.labels is not None for a in records)} labelled,"
                   f" {sum(skipped.counts.values())} skipped record(s)")
    if webhook_url is None and ml_backend_url:
        webhook_url = ml_backend_url.rstrip("/") + "/webhook"
    result = init_project(title, tax, assets=records, url=settings.label_studio.url, ml_backend_url=ml_backend_url,
                          webhook_url=webhook_url, wait_seconds=wait, say=typer.echo)
    typer.echo(f"project {result.project_id}")


def main() -> None:
    try:
        load_secret_files()  # NAME_FILE -> NAME for the tokens, before any command reads them
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
