"""Set up a Label Studio project for the service in one idempotent call: a labelling interface built from the
taxonomy, the assets imported as tasks (human labels as annotations), the service's HTTP API connected as the
project's ML backend, and a webhook to the API that carries the API token.

How taxonomy codes map to what the Label Studio connector reads back
--------------------------------------------------------------------
Each facet of the taxonomy becomes one `<Taxonomy name="{facet}">` control; each node a nested
`<Choice value="{name}" alias="{code}">` under its parent. The connector (`connectors.label_studio_schema`) names a
node `CONTROL:path`, the path being the choice keys (alias, else value) from the root joined by "/". So the CSV
code `AN101` (parent `AN`, facet `subject`) is the connector's `subject:AN/AN101`, and a facet root such as `BE`
(facet `population`) is `population:BE`: see `label_studio_code`. Annotation paths use the same keys, the aliases
(`{"taxonomy": [["AN", "AN101"]]}`), as Label Studio's own UI writes them when choices have aliases; Label Studio
1.23.2 stores any path on import without checking it, so a path of display values would be imported and then be
unknown to the connector. What does not carry over: a node's level is its depth in the tree on Label Studio (the
CSV's `level` column is not part of a labelling config), and the keyword rules stay in the CSV (a worker on a Label
Studio project reads its taxonomy from the project, without keyword rules).
"""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from urllib.parse import urlsplit

from pydantic import SecretStr

from automl.taxonomy import Taxonomy
from connectors.base import Asset
from connectors.errors import PlatformError, PlatformUnavailable
from connectors.label_studio_client import LABEL_EVENTS, LabelStudioClient, LabelStudioError
from connectors.label_studio_schema import (
    LabelConfigError,
    LabelStudioSchema,
    node_code,
    parse_label_config,
)

__all__ = ["InitResult", "LabelStudioSetupError", "annotation_result", "init_project", "label_config_from_taxonomy",
           "label_studio_code"]

log = logging.getLogger(__name__)

TEXT_OBJECT = "text"  # the <Text> object every control labels
ML_BACKEND_TITLE = "classie-automl"
ML_BACKEND_USER = "classie"  # Label Studio sends basic auth; the API checks the password (the token) only


class LabelStudioSetupError(LabelStudioError):
    """The project cannot be set up as asked; the message says why and how to fix it."""


@dataclass(frozen=True)
class InitResult:
    project_id: int
    created: bool  # False: a project with the title was there already
    tasks_imported: int
    annotations_imported: int
    ml_backend: str | None  # the ML backend URL the project is connected to (None: not asked)
    webhook: str | None  # the webhook URL that carries the API token (None: not asked)


# ---- labelling config ---------------------------------------------------------------------------------------------

def label_config_from_taxonomy(taxonomy: Taxonomy, text_key: str = "text") -> str:
    """One `<Taxonomy>` per facet (multi-select, Label Studio's default) under a `<Header>` with the facet's name,
    choices nested as the tree, codes as aliases, over `<Text name="text" value="$text_key"/>`. Where two codes of
    a facet share a name, its chips show the whole path, so that a labeller can tell them apart."""
    view = ET.Element("View")
    ET.SubElement(view, "Text", name=TEXT_OBJECT, value=f"${text_key}")

    def add(parent: ET.Element, code: str) -> None:
        choice = ET.SubElement(parent, "Choice", value=taxonomy.nodes[code].name, alias=taxonomy.nodes[code].key)
        for child in taxonomy.children.get(code, []):
            add(choice, child)

    for facet in taxonomy.facets:
        ET.SubElement(view, "Header", value=facet.replace("_", " ").capitalize())
        names = [n.name for n in taxonomy.nodes.values() if n.facet == facet]
        control = ET.SubElement(view, "Taxonomy", name=facet, toName=TEXT_OBJECT)
        if len(set(names)) < len(names):
            control.set("showFullPath", "true")
            control.set("pathSeparator", " / ")
        for root in taxonomy.children.get(None, []):
            if taxonomy.nodes[root].facet == facet:
                add(control, root)
    ET.indent(view, space="  ")
    return ET.tostring(view, encoding="unicode")


def label_studio_code(taxonomy: Taxonomy, code: str) -> str:
    """The connector's code for a taxonomy code: `facet:root/.../code` (see the module docstring)."""
    return node_code(taxonomy.nodes[code].facet, _keys(taxonomy, code))


def _keys(taxonomy: Taxonomy, code: str) -> list[str]:
    """The choice keys (aliases) from the root to a taxonomy code."""
    return [taxonomy.nodes[c].key for c in [*reversed(taxonomy.ancestors(code)), code]]


def annotation_result(taxonomy: Taxonomy, codes: Iterable[str]) -> list[dict]:
    """A Label Studio annotation result for taxonomy codes: one item per facet, a path of aliases per code."""
    paths: dict[str, list[list[str]]] = {}
    for code in sorted(set(codes)):
        paths.setdefault(taxonomy.nodes[code].facet, []).append(_keys(taxonomy, code))
    return [{"from_name": facet, "to_name": TEXT_OBJECT, "type": "taxonomy", "value": {"taxonomy": facet_paths}}
            for facet, facet_paths in sorted(paths.items())]


def _schema_difference(ours: LabelStudioSchema, theirs: LabelStudioSchema) -> str:
    """What differs, briefly ('' when the two configs label the same way)."""
    problems = []
    if ours.controls != theirs.controls:
        problems.append(f"controls {sorted(theirs.controls)} instead of {sorted(ours.controls)}"
                        if set(ours.controls) != set(theirs.controls) else "controls with other settings")
    missing, extra = sorted(set(ours.paths) - set(theirs.paths)), sorted(set(theirs.paths) - set(ours.paths))
    if missing:
        problems.append(f"{len(missing)} choice(s) missing (e.g. {', '.join(missing[:3])})")
    if extra:
        problems.append(f"{len(extra)} choice(s) not in the taxonomy (e.g. {', '.join(extra[:3])})")
    renamed = sorted(c for c in set(ours.names) & set(theirs.names) if ours.names[c] != theirs.names[c])
    if renamed:
        problems.append(f"{len(renamed)} choice(s) named otherwise (e.g. {', '.join(renamed[:3])})")
    return "; ".join(problems)


# ---- set-up -------------------------------------------------------------------------------------------------------

def init_project(
    client: LabelStudioClient,
    title: str,
    taxonomy: Taxonomy,
    *,
    assets: Iterable[Asset] | None = None,
    ml_backend_url: str | None = None,
    webhook_url: str | None = None,
    api_token: SecretStr | None = None,
    wait_seconds: float = 120.0,
    chunk_size: int = 500,
    text_key: str = "text",
    say: Callable[[str], None] = log.info,
) -> InitResult:
    """Find the project titled `title` (or create it), import `assets` into it when it has no task yet, connect
    `ml_backend_url` as its ML backend and create `webhook_url` with `Authorization: Bearer <api token>`. Safe to run
    again: what is there already is left as it is. `wait_seconds` bounds the wait for Label Studio to answer, and
    then for the ML backend to pass Label Studio's connection check. `say` gets one line per step."""
    token = api_token.get_secret_value() if api_token else ""
    if (ml_backend_url or webhook_url) and not token:
        raise LabelStudioSetupError("connecting the API needs its token. Fix: set CLASSIE_API_TOKEN (the same"
                                    " value the API is started with).")
    for flag, url in (("--ml-backend-url", ml_backend_url), ("--webhook-url", webhook_url)):
        if url:
            _check_storable(flag, url)
    config = label_config_from_taxonomy(taxonomy, text_key)
    try:
        ours = parse_label_config(config)
    except LabelConfigError as exc:  # e.g. a code with "/" makes two key paths alike
        raise LabelStudioSetupError(f"the taxonomy does not make a usable labelling config: {exc}") from None
    try:
        client.wait_until_up(wait_seconds)
    except PlatformUnavailable as exc:
        raise LabelStudioSetupError(str(exc)) from None
    say(f"{client.where}: token accepted")

    project_id, created, task_count = _find_or_create(client, title, config, ours, say)
    imported = annotated = 0
    if assets is not None:
        if task_count:
            say(f"tasks: the project has {task_count} already; nothing imported")
        else:
            imported, annotated = _import(client, project_id, taxonomy, assets, text_key, chunk_size)
            say(f"tasks: {imported} imported, {annotated} with their human labels as annotations")
    webhook_url = webhook_url.rstrip("/") if webhook_url else None
    if webhook_url:
        # Before the ML backend: Label Studio then skips creating its own webhook (one without credentials).
        _ensure_webhook(client, project_id, webhook_url, token, say, create=True)
    ml_backend_url = ml_backend_url.rstrip("/") if ml_backend_url else None
    if ml_backend_url:
        _connect_ml_backend(client, project_id, ml_backend_url, token, wait_seconds, say)
        if f"{ml_backend_url}/webhook" != webhook_url:
            # Connecting adds `<backend>/webhook` (all actions, no credentials) unless a webhook with that URL
            # exists: give it the token too, or the API answers its events with 401.
            _ensure_webhook(client, project_id, f"{ml_backend_url}/webhook", token, say, create=False)
    return InitResult(project_id, created, imported, annotated, ml_backend_url, webhook_url)


def _find_or_create(client: LabelStudioClient, title: str, config: str, ours: LabelStudioSchema,
                    say: Callable[[str], None]) -> tuple[int, bool, int]:
    """(project id, created, number of tasks)."""
    # ?title= is a substring filter: compare titles exactly here.
    found = [p["id"] for p in client.pages("/api/projects", "list the projects", title=title)
             if p.get("title") == title]
    if not found:
        project = client.call_object("POST", "/api/projects", "create the project", retry=False,
                                     json={"title": title, "label_config": config})
        say(f"project {project['id']} {title!r}: created")
        return int(project["id"]), True, 0
    if len(found) > 1:
        say(f"projects {', '.join(map(str, sorted(found)))} are all titled {title!r}: using the oldest")
    project_id = min(found)
    project = client.call_object("GET", f"/api/projects/{project_id}", "read the project")
    try:
        difference = _schema_difference(ours, parse_label_config(project.get("label_config") or ""))
    except LabelConfigError as exc:
        difference = str(exc)
    if difference:
        raise LabelStudioSetupError(
            f"project {project_id} {title!r} exists with another labelling config than the taxonomy's ({difference});"
            " it was left unchanged. Fix: pass another --title, or fix or delete that project.")
    task_count = int(project.get("task_number") or 0)
    say(f"project {project_id} {title!r}: found, labelling config matches the taxonomy")
    return project_id, False, task_count


def _chunks(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _import(client: LabelStudioClient, project_id: int, taxonomy: Taxonomy, assets: Iterable[Asset], text_key: str,
            chunk_size: int) -> tuple[int, int]:
    def tasks() -> Iterator[dict]:
        for asset in assets:
            task: dict = {"data": {text_key: asset.text, "id": asset.id}}
            if asset.labels:
                task["annotations"] = [{"result": annotation_result(taxonomy, asset.labels)}]
            yield task

    imported = annotated = 0
    for chunk in _chunks(tasks(), chunk_size):
        try:
            # Not retried: an import whose answer was lost may have landed, and a resend would duplicate it.
            answer = client.call_object("POST", f"/api/projects/{project_id}/import", "import tasks", retry=False,
                                        json=chunk)
        except PlatformError as exc:
            raise LabelStudioSetupError(
                f"{exc}. {imported} task(s) were imported before this; a run finds tasks in the project and"
                " imports nothing. Fix: delete the project's tasks (or the project) and run again.") from None
        imported += int(answer.get("task_count", len(chunk)))
        annotated += int(answer.get("annotation_count", 0))
    return imported, annotated


def _check_storable(flag: str, url: str) -> None:
    """Label Studio keeps a webhook's URL only if Django's URL check passes: a host name needs a dot (`api`, a
    compose service's name, is refused with 400 "Enter a valid URL"), unless it is `localhost` or an IP address.
    Checked before anything is created, so that a rerun with the right URL finds nothing half done."""
    host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme not in ("http", "https") or not host:
        raise LabelStudioSetupError(f"{flag} {url}: not an http(s) URL. Fix: give the API's address as Label Studio"
                                    " reaches it, e.g. http://api.classie.internal:9090")
    if "." not in host and host != "localhost" and ":" not in host:
        raise LabelStudioSetupError(
            f"{flag} {url}: Label Studio refuses a host name without a dot ({host!r}) for its webhooks. Fix: reach"
            f" the API by a name with a dot (in Docker compose, a network alias such as {host}.classie.internal),"
            " an IP address, or localhost")


def _ensure_webhook(client: LabelStudioClient, project_id: int, url: str, api_token: str, say: Callable[[str], None],
                    create: bool) -> None:
    authorization = f"Bearer {api_token}"
    hooks = client.call_list("GET", "/api/webhooks/", "list the webhooks", params={"project": project_id})
    hook = next((h for h in hooks if h.get("project") == project_id and (h.get("url") or "").rstrip("/") == url),
                None)
    if hook is None:
        if not create:
            return
        client.call("POST", "/api/webhooks/", "create the webhook", json={
            "project": project_id, "url": url, "send_payload": True, "send_for_all_actions": False,
            "headers": {"Authorization": authorization}, "is_active": True, "actions": list(LABEL_EVENTS)})
        say(f"webhook {url}: created ({', '.join(LABEL_EVENTS)}; with the API token)")
        return
    headers = hook.get("headers") or {}
    if headers.get("Authorization") == authorization and hook.get("is_active", True):
        say(f"webhook {url}: there already, with the API token")
        return
    # A PATCH without `actions` would clear them (Label Studio 1.23.2 sets the list it is given): resend them.
    client.call("PATCH", f"/api/webhooks/{hook['id']}/", "update the webhook", json={
        "headers": {**headers, "Authorization": authorization}, "is_active": True,
        "actions": hook.get("actions") or [], "send_for_all_actions": hook.get("send_for_all_actions", False)})
    say(f"webhook {url}: Authorization header set to the API token")


def _connect_ml_backend(client: LabelStudioClient, project_id: int, url: str, api_token: str, wait_seconds: float,
                        say: Callable[[str], None]) -> None:
    """Connect the backend unless it is connected already. Label Studio 1.23.2 calls the
    backend's /health and /setup before it answers and, if either fails, answers 400 and creates nothing: while the
    API is starting, ask again until `wait_seconds` have passed."""
    deadline = time.monotonic() + wait_seconds
    body = {"url": url, "project": project_id, "title": ML_BACKEND_TITLE, "is_interactive": False,
            "auth_method": "BASIC_AUTH", "basic_auth_user": ML_BACKEND_USER, "basic_auth_pass": api_token}
    waiting = False
    while True:
        backends = client.call_list("GET", "/api/ml", "list the ML backends", params={"project": project_id})
        if any((b.get("url") or "").rstrip("/") == url for b in backends):
            say(f"ML backend {url}: connected already")
            return
        response = client.send("POST", "/api/ml", retry=False, json=body)
        if response.status_code < 300:
            say(f"ML backend {url}: connected")
            return
        detail = client.detail(response)
        if response.status_code != 400:
            raise LabelStudioSetupError(f"Label Studio could not connect the ML backend {url}"
                                        f" ({response.status_code}: {detail})")
        if _backend_refused_credentials(detail):
            raise LabelStudioSetupError(f"the API at {url} refused the token Label Studio sent. Fix: give"
                                        " label-studio-init the same CLASSIE_API_TOKEN as the API.")
        if time.monotonic() >= deadline:
            raise LabelStudioSetupError(
                f"the API at {url} did not pass Label Studio's connection check within {wait_seconds:.0f} s (last"
                f" answer: {detail.split(' <a ')[0]}). Fix: start the API (classie-automl serve), check that Label"
                " Studio reaches it at that URL (and allows local addresses: ML_BLOCK_LOCAL_IP=false), or pass a"
                " longer --wait.")
        if not waiting:
            say(f"ML backend {url}: not answering yet; waiting up to {wait_seconds:.0f} s")
            waiting = True
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _backend_refused_credentials(detail: str) -> bool:
    """Label Studio reports the backend's own answer to its connection check only as text in a 400. A 401 there is
    a status, not part of a port or an address (the detail names the backend's URL)."""
    return "authentication" in detail.lower() or re.search(r"(?<![\d.:])401(?!\d)", detail) is not None
