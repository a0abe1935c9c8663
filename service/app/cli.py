"""The `classie-automl` command line: it parses, hands the work to the service (`service.app.factory` builds it from the
settings), and reports. Every error of the service's family ends with its message and its exit code; the command
modules load their libraries when they run, so that `--help` answers at once."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from automl.errors import ClassieError
from service.app.logs import setup_logging
from service.config import ConfigError, Secrets, Settings, flag_overrides, load_settings, read_secrets

if TYPE_CHECKING:
    from automl.metrics import FacetScore, LevelScore
    from service.cycle.dry_run import DryRun
    from service.cycle.records import CycleSummary

__all__ = ["PROJECT_OPTIONS", "app", "main"]

log = logging.getLogger("classie_automl")
R = TypeVar("R")
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="AutoML pre-annotation for hierarchical text labelling.")

# The options that say which project a command works on, declared once: every command that reads a project takes
# them through `reads_project` (a command that has no use for some names the ones it takes).
PROJECT_OPTIONS = {
    "config": Annotated[Path | None, typer.Option("--config", envvar="CLASSIE_CONFIG",
                                                     help="TOML configuration file (else CLASSIE_CONFIG).")],
    "platform": Annotated[str | None, typer.Option("--platform", help="files, kili or label-studio.")],
    "assets": Annotated[Path | None, typer.Option("--assets", help="Assets file (CSV or JSONL), platform files.")],
    "taxonomy": Annotated[Path | None, typer.Option("--taxonomy", help="Taxonomy CSV.")],
    "state": Annotated[Path | None, typer.Option("--state", help="State folder (models, outputs, logs).")],
    "project_id": Annotated[str | None, typer.Option(
        "--project-id", help="The project on the platform: Kili's project id, or Label Studio's project number.")],
    "url": Annotated[str | None, typer.Option("--url", help="Label Studio's URL (else LABEL_STUDIO_URL).")],
}
BudgetOpt = Annotated[int | None, typer.Option("--budget", help="Total search time per training, seconds.")]
OutputOpt = Annotated[Path | None, typer.Option("--output", help="Pre-annotations JSONL (platform files).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


@dataclass(frozen=True)
class Project:
    """The project options a command was given (PROJECT_OPTIONS); None: not given."""

    config: Path | None = None
    platform: str | None = None
    assets: Path | None = None
    taxonomy: Path | None = None
    state: Path | None = None
    project_id: str | None = None
    url: str | None = None

    def settings(self, **flags: object) -> Settings:
        """The settings: the config file, the environment, then these options and `flags` (budget, output)."""
        given = {name: getattr(self, name) for name in ("platform", "assets", "taxonomy", "state", "url")}
        return load_settings(self.config, flag_overrides(**given, **flags), self.project_id)


def reads_project(*names: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Gives the command the project options `names` (all of them by default) as `project: Project`."""
    chosen = names or tuple(PROJECT_OPTIONS)

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(func, eval_str=True)  # the Annotated options, not their text
        own = [p for p in signature.parameters.values() if p.name != "project"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=PROJECT_OPTIONS[name]) for name in chosen]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> R:
            return func(*args, project=Project(**{name: kwargs.pop(name) for name in chosen}), **kwargs)

        # What Typer reads the options from (inspect's hook): an attribute that functions are not typed with.
        hooked: Any = command
        hooked.__signature__ = signature.replace(parameters=own + added)
        return command

    return decorate


def _secrets(ctx: typer.Context) -> Secrets:
    return ctx.obj if isinstance(ctx.obj, Secrets) else read_secrets()


def _guard(func):
    """The service's errors end with their message and exit code (2: input or platform refusal), no traceback."""
    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ClassieError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
    return run


# ---- reports ------------------------------------------------------------------------------------------------------

def _print_metrics(title: str, levels: Sequence[LevelScore], facets: Sequence[FacetScore] = ()) -> None:
    """Quality and effort per level (micro P is the pre-fill precision, micro R the coverage; effort = edits with
    the pre-annotations over edits without), then per facet with the calibration of the pre-filled confidences."""
    typer.echo(title)
    typer.echo(f"  {'facet':<12}{'level':>5}{'labels':>8}{'micro P':>9}{'micro R':>9}{'micro F1':>10}{'macro F1':>10}"
               f"{'effort':>8}{'no edit':>9}")
    for m in levels:
        typer.echo(f"  {m.facet:<12}{m.level:>5}{m.n_labels:>8}{m.micro_precision:>9.3f}{m.micro_recall:>9.3f}"
                   f"{m.micro_f1:>10.3f}{m.macro_f1:>10.3f}{m.effort.ratio:>8.2f}{m.effort.no_edit_share:>9.1%}")
    for f in facets:
        e = f.effort
        typer.echo(f"  {f.facet}, all levels: effort {e.ratio:.2f} ({e.edits} edits instead of {e.gold}: {e.added}"
                   f" to add, {e.deleted} to delete), pre-fill precision {e.prefill_precision:.3f}, coverage"
                   f" {e.coverage:.3f}, no edit {e.no_edit_share:.1%} of {e.assets}, calibration error"
                   f" {f.calibration_error:.3f} over {f.prefilled} pre-fills")


def _print_cycle(summary: CycleSummary) -> None:
    skipped = ", ".join(f"{n} {reason}" for reason, n in summary.skipped.items()) or "none"
    typer.echo(f"pulled {summary.pulled} assets: {summary.labelled} labelled, {summary.unlabelled} to pre-annotate;"
               f" skipped records: {skipped}")
    if summary.rejected:
        typer.echo(f"model {summary.model_version}: current; a new version was trained ({summary.train_reason}) and"
                   f" REJECTED by the promotion gate, {summary.rejected}")
    else:
        typer.echo(f"model {summary.model_version}: " + (f"trained ({summary.train_reason})" if summary.trained
                                                        else "current, no training needed"))
    typer.echo(f"pre-annotations: {summary.written} written, {summary.already} already there for this version"
               + (f", {summary.abandoned} left for the next run (stop requested)" if summary.abandoned else ""))
    typer.echo("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items()))
    if summary.trained:
        _print_metrics("held-out quality (cross-validated on the labelled assets):", summary.heldout,
                       summary.heldout_facets)


def _print_dry_run(run: DryRun, shown: int = 20) -> None:
    summary = run.cycle
    typer.echo("dry run: nothing was written to the platform or the model registry")
    skipped = ", ".join(f"{n} {reason}" for reason, n in summary.skipped.items()) or "none"
    typer.echo(f"pulled {summary.pulled} assets: {summary.labelled} labelled, {summary.unlabelled} unlabelled;"
               f" skipped records: {skipped}")
    if run.collapse:
        typer.echo(f"would stop: {run.collapse}")
        return
    if run.would_train:
        typer.echo(f"would train a new version ({summary.train_reason}) and pre-annotate the unlabelled assets with it"
                   " (not done in a dry run: which labels it would propose is not known)")
    else:
        typer.echo(f"would not train ({summary.label_changes} label change(s) since {summary.model_version},"
                   " under the retrain rule)" if summary.label_changes else "would not train: nothing changed")
    if run.destination_changed:
        typer.echo(f"pushes now go elsewhere than before ({run.destination_changed}): a real cycle forgets what it"
                   " pushed there and pre-annotates every unlabelled asset again (counts below: as before)")
    if not summary.model_version:
        return
    typer.echo(f"would push {run.would_push} pre-annotation(s) of {summary.model_version} ({summary.already} already"
               f" there): {run.new} for assets without one, {len(run.changes)} changing an asset's pre-fill,"
               f" {run.unchanged} with the same codes" + (f", {run.unknown} of unknown change (pushed by an earlier"
                                                          " release)" if run.unknown else ""))
    for change in run.changes[:shown]:
        typer.echo(f"  {change.asset_id}: " + " ".join([*(f"+{c}" for c in change.added),
                                                        *(f"-{c}" for c in change.removed)]))
    if len(run.changes) > shown:
        typer.echo(f"  ... and {len(run.changes) - shown} more")
    typer.echo(f"priorities that would be set or change: {run.priorities_changed}")


def _evaluate(settings: Settings, test: Path, json_out: Path | None) -> None:
    from service.app.factory import open_registry
    from service.quality.evaluation import evaluate_current

    result = evaluate_current(open_registry(settings), test, settings.files)
    _print_metrics(f"model {result.version.name} on {result.n_assets} labelled assets of {test.name}:",
                   result.scores.levels, result.scores.facets)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
        typer.echo(f"wrote {json_out}")


# ---- commands -----------------------------------------------------------------------------------------------------

@app.command()
@_guard
@reads_project()
def train(ctx: typer.Context, project: Project, budget: BudgetOpt = None, verbose: VerboseOpt = False) -> None:
    """Pull the labelled assets and train a new model version (always)."""
    from service.app.factory import build_worker

    setup_logging(verbose)
    settings = project.settings(budget=budget)
    version = build_worker(settings, _secrets(ctx)).train_now()
    typer.echo(f"model {version.name} trained on {version.n_train} labelled assets"
               f" in {version.summary.get('fit_seconds', 0):.0f} s")
    _print_metrics("held-out quality (cross-validated on the labelled assets):", version.metrics, version.facets)
    if version.gate:
        typer.echo(("REJECTED, not serving: " if version.rejected else "promoted: ") + version.gate["reason"])


@app.command()
@_guard
@reads_project()
def predict(ctx: typer.Context, project: Project, output: OutputOpt = None, verbose: VerboseOpt = False) -> None:
    """Pre-annotate the unlabelled assets with the current model (no training)."""
    from service.app.factory import build_worker

    setup_logging(verbose)
    settings = project.settings(output=output)
    summary = build_worker(settings, _secrets(ctx)).pre_annotate_now()
    typer.echo(f"model {summary.model_version}: {summary.written} pre-annotations written, {summary.already} already"
               f" there ({settings.output_path})")


@app.command()
@_guard
@reads_project()
def evaluate(test: Annotated[Path, typer.Option("--test", help="Labelled assets file to score against.")],
             project: Project,
             json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores here.")] = None,
             verbose: VerboseOpt = False) -> None:
    """Score the current model on a labelled file: precision, recall, F1 per facet and level."""
    setup_logging(verbose)
    _evaluate(project.settings(), test, json_out)


@app.command()
@_guard
@reads_project()
def run(ctx: typer.Context, project: Project,
        once: Annotated[bool, typer.Option("--once", help="One cycle, then exit.")] = False,
        budget: BudgetOpt = None, output: OutputOpt = None,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="With --once: say what the cycle would train and push, writing nothing to the platform"
                              " or the registry.")] = False,
        verbose: VerboseOpt = False) -> None:
    """Pull, train when the human labels changed, pre-annotate what is new; once, or every interval."""
    from service.app.factory import build_worker
    from service.app.polling import PollingLoop
    from service.signals import StopRequested, install_stop_handlers
    from service.store.heartbeat import Heartbeat

    setup_logging(verbose)
    if dry_run and not once:
        raise ConfigError("--dry-run is for one cycle. Fix: add --once.")
    settings = project.settings(budget=budget, output=output)
    if dry_run:
        _print_dry_run(build_worker(settings, _secrets(ctx)).dry_run())
        return
    stop = threading.Event()
    heartbeat = None if once else Heartbeat.started(settings.state_dir)
    worker = build_worker(settings, _secrets(ctx), stop, heartbeat)
    install_stop_handlers(stop)
    if not once:
        PollingLoop(worker, heartbeat).run()
    else:
        try:
            _print_cycle(worker.run_once())
        except StopRequested as exc:
            log.info("%s", exc)
        else:
            if settings.evaluation.test and not stop.is_set():
                try:
                    _evaluate(settings, settings.evaluation.test, settings.state_dir / "evaluation.json")
                except ClassieError as exc:  # the cycle did its work: a test file that cannot be scored is no failure
                    log.warning("[evaluation] test %s: %s", settings.evaluation.test, exc)
                    typer.echo(f"evaluation skipped: {exc}")
    log.info("stopped")


@app.command()
@_guard
@reads_project()
def serve(ctx: typer.Context, project: Project,
          host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 9090,
          verbose: VerboseOpt = False) -> None:
    """The HTTP API: /health, /setup, /predict, /webhook (schedules a background cycle), /metrics.
    Every endpoint but /health needs the token of CLASSIE_API_TOKEN (bearer, or basic auth). On Label Studio
    without --project-id: the project recorded in the state folder, else the one Label Studio connects it to (no
    restart). With no model version in the state folder, the first is trained in the background at once."""
    from service.app.serving import serve_api

    setup_logging(verbose)
    secrets = _secrets(ctx)
    if secrets.classie_api_token is None:
        raise ConfigError("serve needs a token. Fix: set CLASSIE_API_TOKEN (callers send it as a bearer token).")
    settings = project.settings()
    serve_api(settings, secrets, host, port, verbose)
    log.info("stopped")


@app.command()
@_guard
@reads_project("config", "assets", "taxonomy")
def simulate(
        project: Project,
        out: Annotated[Path, typer.Option("--out", help="Folder for rounds.jsonl, curves.csv, curves.png.")] = Path(
            "simulation"),
        test: Annotated[Path | None, typer.Option(
            "--test", help="Held-out labelled file (else [evaluation] test, else a 20% split kept in --out).")] = None,
        seed_labels: Annotated[int, typer.Option("--seed-labels", min=1, help="Labels to start from.")] = 200,
        rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds of labelling.")] = 8,
        per_round: Annotated[int, typer.Option("--per-round", min=1, help="Assets labelled per round.")] = 200,
        strategy: Annotated[str, typer.Option("--strategy", help="priority, random or both.")] = "both",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the seed labels and the random draws.")] = 1,
        budget: BudgetOpt = None, verbose: VerboseOpt = False) -> None:
    """Replay a labelling campaign on the labelled assets of [files] assets: from --seed-labels, --rounds rounds of
    --per-round more labels chosen by the service's priority or at random, a real training each round (--budget),
    scored on a held-out set. Resumable: a rerun carries on from the last round written."""
    from connectors.files import load_assets
    from service.quality.simulation import STRATEGIES, Campaign, held_out, write_curves
    from service.quality.simulation import simulate as run_campaign

    setup_logging(verbose)
    settings = project.settings(budget=budget)
    strategies = STRATEGIES if strategy == "both" else (strategy,)
    if not set(strategies) <= set(STRATEGIES) or settings.files.assets is None or settings.taxonomy.path is None:
        raise ConfigError("simulate needs --strategy priority, random or both, and the labelled assets and taxonomy"
                          " of the files platform (--assets and --taxonomy, or [files] assets and [taxonomy] path).")
    t = settings.taxonomy
    tax = t.load()
    labelled = load_assets(settings.files.assets, tax, settings.files, require_labels=True)
    test = test or settings.evaluation.test
    if test is not None:
        pool, held = labelled, load_assets(test, tax, settings.files, require_labels=True)
    else:
        pool, held = held_out(labelled, 0.2, seed, out)
    typer.echo(f"pool {len(pool)} labelled assets, held-out {len(held)}; strategies {', '.join(strategies)}")
    rows = run_campaign(pool, held, tax, settings.model, Campaign(seed_labels, rounds, per_round, strategies, seed),
                        out, progress=typer.echo)
    table, plot = write_curves(rows, out)
    typer.echo(f"wrote {out / 'rounds.jsonl'}, {table}, {plot}")


@app.command()
@_guard
@reads_project("config", "state")
def health(project: Project,
           url: Annotated[str | None, typer.Option(
               "--url", envvar="CLASSIE_HEALTH_URL",
               help="Check this /health URL (the HTTP API) instead of the worker's heartbeat.")] = None) -> None:
    """Exit 0 when healthy, 1 when not (Docker's HEALTHCHECK): the polling worker's heartbeat is recent, or the
    API's /health answers 200."""
    from service.app.health import check_heartbeat, check_url

    if url:
        status = check_url(url)
    else:
        settings = project.settings()
        status = check_heartbeat(settings.state_dir, settings.worker.stale_after_seconds)
    typer.echo(("healthy: " if status.healthy else "unhealthy: ") + status.message)
    raise typer.Exit(0 if status.healthy else 1)


@app.command()
@_guard
@reads_project()
def models(project: Project,
           promote: Annotated[int | None, typer.Option(
               "--promote", help="Make version N current, whatever the promotion gate said (a rollback).")] = None,
           show: Annotated[int | None, typer.Option("--show", help="Print version N's summary.")] = None,
           ) -> None:
    """List model versions with their status (current, previous, rejected) and evaluation-slice scores, promote
    one, or show one."""
    from service.app.factory import open_registry

    registry = open_registry(project.settings())
    if promote is not None:
        registry.promote(promote)
    if show is not None:
        version = registry.version(show)
        typer.echo(f"{version.name} ({registry.status(version)}), created {version.created_at}, trained on"
                   f" {version.n_train} labelled assets in {version.summary.get('fit_seconds', 0):.0f} s")
        _print_gate(version.gate)
        _print_metrics("held-out quality (cross-validated on its training assets):", version.metrics,
                       version.facets)
        return
    for v in registry.versions():
        typer.echo(f"{v.name:<6} {registry.status(v):<8} {v.created_at}  trained on {v.n_train:>6}  "
                   + _slice_line(v.gate.get("candidate") or {}) + (f"  ({v.gate['reason']})" if v.gate else ""))


def _slice_line(figures: dict) -> str:
    return "slice " + (" ".join(f"{facet} F1 {f['micro_f1']:.3f} effort {f['effort_ratio']:.2f}"
                                for facet, f in figures.items()) or "-")


def _print_gate(gate: dict) -> None:
    if not gate:
        typer.echo("promotion gate: none (trained before it, or with no evaluation slice)")
        return
    typer.echo(f"promotion gate: {'promoted' if gate['promoted'] else 'REJECTED'}: {gate['reason']}")
    typer.echo(f"  evaluation slice: {gate['slice_assets']} labelled assets (holdout_fraction"
               f" {gate['holdout_fraction']:g})")
    typer.echo(f"  this version: {_slice_line(gate.get('candidate') or {})}")
    if gate.get("current"):
        typer.echo(f"  {gate['against']}: {_slice_line(gate['current'])}")


@app.command()
@_guard
@reads_project()
def report(project: Project,
           version: Annotated[int | None, typer.Option("--version", help="Version N (default: the current one).")]
           = None,
           test: Annotated[Path | None, typer.Option(
               "--test", help="Score on this labelled file (CSV or JSONL) instead of the evaluation slice.")] = None,
           out: Annotated[Path, typer.Option("--out", help="Where to write the HTML report.")] = Path("report.html"),
           verbose: VerboseOpt = False) -> None:
    """Write a version's evaluation report: one self-contained HTML file (effort, quality per level and label,
    curves, calibration, hierarchy confusions, confident mistakes, versions compared)."""
    import time

    from service.app.factory import open_registry, open_state
    from service.quality.report import held_out_for, write_report

    setup_logging(verbose)
    settings = project.settings()
    registry = open_registry(settings)
    chosen = registry.version(version) if version is not None else registry.require_current()
    started = time.monotonic()
    evaluation = held_out_for(chosen, lambda: registry.load(chosen), lambda: registry.load_slice_model(chosen),
                                lambda: open_state(settings).labelled_assets(), test, settings.files,
                                settings.evaluation.test)
    path = write_report(registry, chosen, evaluation, out)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {time.monotonic() - started:.1f} s): report of"
               f" {chosen.name} on " + (evaluation.source if evaluation else "no evaluation data"))


@app.command("label-issues")
@_guard
@reads_project()
def label_issues(project: Project,
                 top: Annotated[int | None, typer.Option("--top", help="The N most likely only.")] = None,
                 out: Annotated[Path | None, typer.Option("--out", help="Write them to this CSV.")] = None,
                 version: Annotated[int | None, typer.Option(
                     "--version", help="Version N's list (default: the current one).")] = None) -> None:
    """The likely mistakes in the human labels, most likely first: a label given that the model finds very
    unlikely, or one missing that it finds very likely (out of fold), with what it suggests. Printed (20 unless
    --top), or written whole to --out."""
    from service.app.factory import open_registry
    from service.quality.label_issues import ISSUES_FILE, read_flags, to_csv

    registry = open_registry(project.settings())
    chosen = registry.version(version) if version is not None else registry.require_current()
    path = registry.file_path(chosen, ISSUES_FILE)
    if not path.is_file():
        raise ClassieError(f"{chosen.name} has no list of label issues ({path} is missing: trained by an earlier"
                           " release). Fix: `classie-automl train` makes a version with one.")
    flags = read_flags(path)
    if out is not None:
        shown = flags[:top] if top is not None else flags
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(to_csv(shown), encoding="utf-8")
        tmp.replace(out)
        typer.echo(f"wrote {len(shown)} of {chosen.name}'s {len(flags)} likely label mistakes to {out}")
        return
    shown = flags[:top or 20]
    typer.echo(f"{chosen.name}: {len(flags)} likely mistakes in the human labels; the {len(shown)} most likely:")
    for f in shown:
        typer.echo(f"{f.rank:>5}  {f.asset_id}  {f.facet} L{f.level}  {f.kind} {f.code}: {f.advice}")
        typer.echo(f"       {f.excerpt}")


@app.command("label-studio-init")
@_guard
@reads_project("config", "url", "taxonomy", "assets")
def label_studio_init(
        ctx: typer.Context, project: Project,
        title: Annotated[str, typer.Option("--title", help="Project title: found, else created.")] = "classie-automl",
        ml_backend_url: Annotated[str | None, typer.Option(
            "--ml-backend-url", help="The API's URL as Label Studio reaches it: connected as the ML backend.")] = None,
        webhook_url: Annotated[str | None, typer.Option(
            "--webhook-url", help="Webhook for annotation events (default: <ml-backend-url>/webhook).")] = None,
        wait: Annotated[float, typer.Option(
            "--wait", help="Seconds to wait for Label Studio, then for the API, to answer.")] = 120,
        verbose: VerboseOpt = False) -> None:
    """Set up a Label Studio project: labelling interface from the taxonomy, assets as tasks (human labels as
    annotations), the API as ML backend and a webhook carrying CLASSIE_API_TOKEN. Safe to rerun."""
    from connectors.base import SkipLog
    from connectors.files import load_assets
    from connectors.label_studio_setup import init_project
    from service.app.factory import label_studio_client

    setup_logging(verbose)
    settings = project.settings()
    secrets = _secrets(ctx)
    t, f = settings.taxonomy, settings.files
    if t.path is None:
        raise ConfigError("label-studio-init needs --taxonomy (or [taxonomy] path in --config).")
    tax = t.load()
    typer.echo(f"taxonomy {t.path}: {len(tax)} codes, facets {', '.join(tax.facets)}")
    records = None
    if f.assets is not None:  # read before anything is created: a bad file stops here
        skipped = SkipLog()
        records = load_assets(f.assets, tax, f, skipped=skipped)
        typer.echo(f"assets {f.assets}: {len(records)} read, {sum(a.labels is not None for a in records)} labelled,"
                   f" {sum(skipped.counts.values())} skipped record(s)")
    if webhook_url is None and ml_backend_url:
        webhook_url = ml_backend_url.rstrip("/") + "/webhook"
    result = init_project(label_studio_client(settings, secrets), title, tax, assets=records,
                          ml_backend_url=ml_backend_url, webhook_url=webhook_url,
                          api_token=secrets.classie_api_token, wait_seconds=wait, say=typer.echo)
    _say_who_serves(result.project_id, result.ml_backend)
    typer.echo(f"project {result.project_id}")


def _say_who_serves(project_id: int, backend: str | None) -> None:
    """What the connected API says it serves (its /health), and the setting that names the project elsewhere."""
    from service.app.health import backend_health

    env_line = f"CLASSIE_LABEL_STUDIO__PROJECT_ID={project_id}"
    if backend is None:
        typer.echo(f"no ML backend connected: start `classie-automl serve --platform label-studio` and rerun with"
                   f" --ml-backend-url <its URL> (serve then takes project {project_id} from Label Studio), or give"
                   f" a worker {env_line}")
        return
    served = backend_health(backend)
    if served is None:
        typer.echo(f"ML backend {backend}: not reachable from here to ask which project it serves; a serve started"
                   f" without --project-id takes project {project_id} from Label Studio's /setup call")
    elif served.get("project") == project_id:
        typer.echo(f"ML backend {backend}: serves project {project_id}, no restart needed (model version"
                   f" {served.get('model_version') or 'none yet: ' + str(served.get('first_version'))})")
    else:
        typer.echo(f"warning: the ML backend {backend} serves project {served.get('project')}, not {project_id}"
                   f" (its --project-id, CLASSIE_LABEL_STUDIO__PROJECT_ID or state folder names it): its webhook cycles"
                   f" go there. Fix: restart it with --project-id {project_id}, or connect a serve of its own")
    typer.echo(f"a worker or serve on another state folder needs: {env_line} (or --project-id {project_id})")


def main() -> None:
    try:
        secrets = read_secrets()  # once, before any command: a NAME_FILE that cannot be read stops every one
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    app(obj=secrets)


if __name__ == "__main__":
    main()
