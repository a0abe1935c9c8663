"""A local stand-in for the part of Kili's GraphQL API that the real `kili` SDK (26.x) calls.

It lets the Kili connector be tested against the real SDK with its start-up checks on
(no KILI_SDK_SKIP_CHECKS): the SDK introspects the schema below, validates every document it
sends against it, and the server executes those documents with graphql-core. Only loopback, only
stdlib plus graphql-core (a kili dependency).

Endpoints, under http://127.0.0.1:<port>/api/label/v2:
  POST /graphql   GraphQL, header `Authorization: X-API-Key: <key>`
  GET  /version   {"version": ...}, unique per emulator so that the SDK's schema cache never
                  serves one emulator's schema to another
  GET  /files?id= the text of an asset (its `content` URL), with the API key

What an operation does on the state is described on the resolvers; see `SDL` for the types.
Faults (`inject`) are answered the way a proxy or the network would, so the SDK's own retry and
"outcome unknown" logic is what gets exercised.
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import json
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    ValueNode,
    build_schema,
    execute,
    parse,
    validate,
)
from graphql.language import IntValueNode

API_PREFIX = "/api/label/v2"
LABEL_TYPES = ("AUTOSAVE", "DEFAULT", "INFERENCE", "PREDICTION", "REVIEW")
ISSUE_STATUSES = ("CANCELLED", "OPEN", "SOLVED")
FAULTS = ("429", "502", "500", "timeout", "drop")
# The largest page the emulator serves; the SDK asks for 100 (50 with label json responses).
MAX_PAGE_SIZE = 500
API_KEY_EXPIRY = "2099-12-31T23:59:59.000Z"
VIEWER = {"id": "user-emulated", "email": "emulated.user@example.com", "firstname": "Emulated", "lastname": "User"}

# The subset of Kili's schema the SDK's documents use. Input objects carry every field the SDK's
# mappers can put in them (kili/adapters/kili_api_gateway/*/mappers.py), since graphql-core refuses
# variables with unknown fields; filters the emulator does not implement are refused at run time
# (see _unsupported) rather than silently ignored.
SDL = """
\"\"\"An integer between 1 and 500: the size of a page.\"\"\"
scalar PageSize
scalar JSON

enum LabelType { AUTOSAVE DEFAULT INFERENCE PREDICTION REVIEW }
enum InputType {
  AUDIO GEOSPATIAL IMAGE LLM_INSTR_FOLLOWING LLM_RLHF LLM_STATIC NA PDF TEXT TIME_SERIES URL VIDEO
  VIDEO_LEGACY
}
enum Status { TODO ONGOING LABELED TO_REVIEW REVIEWED }
enum StatusInStep { TO_DO DOING IN_PROGRESS PARTIALLY_DONE REWORK REDO DONE SKIPPED }
enum WorkflowVersion { V1 V2 V3 }
enum IssueType { QUESTION ISSUE }
enum IssueStatus { CANCELLED OPEN SOLVED }

type User { id: ID! email: String! firstname: String lastname: String }

type ApiKey { id: ID! name: String! key: String! createdAt: String! expiryDate: String! revoked: Boolean! }

type ProjectStep { id: ID! name: String! type: String! order: Int! }

type Project {
  id: ID!
  title: String!
  description: String!
  inputType: InputType!
  \"\"\"The json interface, serialized as a JSON string.\"\"\"
  jsonInterface: String
  workflowVersion: WorkflowVersion!
  steps: [ProjectStep!]!
  archived: Boolean!
  createdAt: String!
  updatedAt: String!
}

type Resolution { width: Int! height: Int! }

type AssetStep { id: ID! name: String! status: StatusInStep! stepGroupName: String }

type Asset {
  id: ID!
  externalId: String!
  \"\"\"For a text asset, a URL to its text that needs the API key.\"\"\"
  content: String!
  jsonContent: String
  \"\"\"Serialized as a JSON string.\"\"\"
  jsonMetadata: String
  createdAt: String!
  updatedAt: String!
  status: Status!
  currentStep: AssetStep
  skipped: Boolean!
  isHoneypot: Boolean!
  priority: Int!
  resolution: Resolution
  project: Project!
  labels: [Label!]!
  issues: [Issue!]!
}

type Label {
  id: ID!
  assetId: ID!
  labelType: LabelType!
  \"\"\"Serialized as a JSON string.\"\"\"
  jsonResponse: String!
  \"\"\"Set when the json response is too large to be inlined: never, here.\"\"\"
  jsonResponseUrl: String
  modelName: String
  createdAt: String!
  author: User!
  isLatestLabelForUser: Boolean!
  secondsToLabel: Float
  labelOf: Asset!
}

\"\"\"The text given at creation is the issue's first comment, as in Kili (`comments.text`).\"\"\"
type Comment { id: ID! issueId: ID! text: String! createdAt: String! authorIdUser: ID! }

type Issue {
  id: ID!
  type: IssueType!
  status: IssueStatus!
  assetId: ID!
  \"\"\"The label an ISSUE was raised on (null for a QUESTION). Unconfirmed: no SDK document asks for it.\"\"\"
  labelId: ID
  objectMid: String
  createdAt: String!
  issueNumber: Int!
  hasBeenSeen: Boolean!
  author: User!
  comments: [Comment!]!
}

input OrganizationWhere { id: ID }

input UserWhere { activated: Boolean email: String id: ID idIn: [ID!] organization: OrganizationWhere }

input ApiKeyWhere { id: ID key: String user: UserWhere }

input ProjectWhere {
  id: ID
  archived: Boolean
  createdAtGte: String
  createdAtLte: String
  deleted: Boolean
  organizationId: ID
  searchQuery: String
  shouldRelaunchKpiComputation: Boolean
  starred: Boolean
  tagIds: [ID!]
  updatedAtGte: String
  updatedAtLte: String
}

\"\"\"As AssetWhere.issue the SDK sends type and status; countIssues/issues add project, asset, assetIn.\"\"\"
input IssueWhere {
  id: ID
  project: ProjectWhere
  asset: AssetWhere
  assetIn: [ID!]
  type: IssueType
  status: IssueStatus
}

\"\"\"An ISSUE names its label (labelID), a QUESTION its asset (assetId).\"\"\"
input IssueToCreate { labelID: ID objectMid: String type: IssueType! assetId: ID text: String }

input StepIdAndStatus { stepId: ID! status: StatusInStep! }

input AssetWhere {
  id: ID
  idIn: [ID!]
  idNotIn: [ID!]
  project: ProjectWhere
  externalIdIn: [String!]
  externalIdStrictlyIn: [String!]
  statusIn: [Status!]
  skipped: Boolean
  updatedAtGte: String
  updatedAtLte: String
  createdAtGte: String
  createdAtLte: String
  consensusMarkGte: Float
  consensusMarkLte: Float
  honeypotMarkGte: Float
  honeypotMarkLte: Float
  inferenceMarkGte: Float
  inferenceMarkLte: Float
  metadata: JSON
  assigneeIn: [String!]
  assigneeNotIn: [String!]
  label: LabelWhere
  issue: IssueWhere
  stepIdIn: [ID!]
  stepIdNotIn: [ID!]
  stepStatusIn: [StatusInStep!]
  stepStatusNotIn: [StatusInStep!]
  stepIdAndStatusIn: [StepIdAndStatus!]
  stepIdAndStatusNotIn: [StepIdAndStatus!]
  groupNameIn: [String!]
  groupNameNotIn: [String!]
}

input LabelWhere {
  id: ID
  idIn: [ID!]
  project: ProjectWhere
  asset: AssetWhere
  typeIn: [LabelType!]
  authorIn: [String!]
  user: UserWhere
  createdAt: String
  createdAtGte: String
  createdAtLte: String
  consensusMarkGte: Float
  consensusMarkLte: Float
  honeypotMarkGte: Float
  honeypotMarkLte: Float
  labelerIn: [String!]
  labelerNotIn: [String!]
  reviewerIn: [String!]
  reviewerNotIn: [String!]
  search: String
}

input AppendLabelData {
  assetID: ID!
  authorID: ID
  clientVersion: Int
  \"\"\"Serialized as a JSON string.\"\"\"
  jsonResponse: String!
  modelName: String
  referencedLabelId: ID
  secondsToLabel: Float
}

input AppendManyLabelsData {
  labelType: LabelType!
  overwrite: Boolean
  labelsData: [AppendLabelData!]!
  stepId: ID
}

type Query {
  viewer: User!
  apiKeys(where: ApiKeyWhere!, skip: Int!, first: PageSize!): [ApiKey!]!
  countApiKeys(where: ApiKeyWhere!): Int!
  projects(where: ProjectWhere!, skip: Int!, first: PageSize!): [Project!]!
  countProjects(where: ProjectWhere!): Int!
  assets(where: AssetWhere!, skip: Int!, first: PageSize!): [Asset!]!
  countAssets(where: AssetWhere!): Int!
  labels(where: LabelWhere!, skip: Int!, first: PageSize!): [Label!]!
  countLabels(where: LabelWhere!): Int!
  issues(where: IssueWhere!, skip: Int!, first: PageSize!): [Issue!]!
  countIssues(where: IssueWhere!): Int!
}

type AssetActionAsset { assetId: ID! externalId: String! }

type AssetActionFailure { assetId: ID! externalId: String! details: String }

type AssetActionOutcome {
  succeeded: [AssetActionAsset!]!
  declined: [AssetActionAsset!]!
  failed: [AssetActionFailure!]!
}

type Mutation {
  \"\"\"Adds one label per labelsData item; with overwrite, first removes the labels of the same
  type and model name on those assets.\"\"\"
  appendManyLabels(data: AppendManyLabelsData!, where: AssetWhere!): [Label!]!
  \"\"\"Sets one priority on the assets still to label (TODO); the others are declined, as Kili does.\"\"\"
  setAssetsPriority(where: AssetWhere!, priority: Int!): AssetActionOutcome!
  \"\"\"Opens one issue per item, all or nothing: every label (or asset) must be in the assets `where`
  selects.\"\"\"
  createIssues(issues: [IssueToCreate!]!, where: AssetWhere!): [Issue!]!
}
"""


class ApiError(GraphQLError):
    """An error the backend reports in a GraphQL answer, shaped like Kili's (code + context)."""

    def __init__(self, message: str, reason: str, **context: Any) -> None:
        # The SDK reads `extensions.context.reason` (and crashes on errors without extensions).
        super().__init__(
            message,
            extensions={"code": "OPERATION_RESOLUTION_FAILURE", "context": {"reason": reason, **context}},
        )


def _parse_page_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise GraphQLError(f"Value is not an integer between 1 and {MAX_PAGE_SIZE} (inclusive): {value!r}")
    return value


def _parse_page_size_literal(node: ValueNode, _variables: Any = None) -> int:
    if not isinstance(node, IntValueNode):
        raise GraphQLError("PageSize must be an integer")
    return _parse_page_size(int(node.value))


def _build_schema() -> GraphQLSchema:
    schema = build_schema(SDL)
    page_size = schema.type_map["PageSize"]
    assert isinstance(page_size, GraphQLScalarType)
    page_size.serialize = _parse_page_size  # type: ignore[method-assign]
    page_size.parse_value = _parse_page_size  # type: ignore[method-assign]
    page_size.parse_literal = _parse_page_size_literal  # type: ignore[method-assign]
    return schema


SCHEMA = _build_schema()


def format_timestamp(moment: datetime) -> str:
    """Kili's timestamp format: ISO 8601, UTC, milliseconds, "Z"."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    """A Kili timestamp, or a date filter as the SDK documents them ("YYYY-MM-DD"), in UTC."""
    moment = datetime.fromisoformat(value.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Clock:
    """Millisecond timestamps from the wall clock that never repeat nor go back.

    Real time, so that a test can derive `updated_at_gte` from `datetime.now()`; strictly
    increasing, so that every change moves an asset's updatedAt forward even within a millisecond.
    """

    def __init__(self) -> None:
        self._last = datetime.now(UTC) - timedelta(milliseconds=1)

    def now(self) -> str:
        moment = datetime.now(UTC)
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if moment <= self._last:
            moment = self._last + timedelta(milliseconds=1)
        self._last = moment
        return format_timestamp(moment)

    def observe(self, value: str) -> str:
        """Take a timestamp set by hand: later stamps come after it. Returns it in Kili's format."""
        moment = parse_timestamp(value)
        self._last = max(self._last, moment)
        return format_timestamp(moment)


@dataclass
class _Fault:
    fault: str
    operation: str
    remaining: int
    apply_first: bool


def _root_fields(document: DocumentNode) -> list[str]:
    return [
        selection.name.value
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
        for selection in definition.selection_set.selections
        if isinstance(selection, FieldNode)
    ]


def _error(message: str, code: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, like the real API: the SDK's sessions reuse connections, and a dropped one must
    # look like a connection closed after the request was sent.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: Nagle would add ~40 ms a request
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.emulator._register_connection(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._register_connection(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # quiet: the emulator's `requests` log is what tests look at

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        path = urlsplit(self.path).path
        body = self._read_body()
        if path != f"{API_PREFIX}/graphql":
            self.server.emulator._log_request(self.command, path, None, None)
            self._send(404, b"Not found", "text/plain")
            return
        try:
            request = json.loads(body or b"{}")
            query, variables = request.get("query") or "", request.get("variables") or {}
            document: DocumentNode | None = parse(query)
        except (ValueError, AttributeError, TypeError, GraphQLError):
            query, variables, document = "", {}, None
        fields = _root_fields(document) if document is not None else []
        operation = fields[0] if fields else None
        emulator = self.server.emulator

        def run() -> tuple[int, bytes, str]:
            status, answer = emulator._graphql(self._api_key(), document, query, variables)
            return status, json.dumps(answer).encode(), "application/json"

        self._serve(path, operation, variables, run)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._get(head=False)

    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self._get(head=True)

    def _get(self, head: bool) -> None:
        url = urlsplit(self.path)
        self._read_body()
        emulator = self.server.emulator
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path == f"{API_PREFIX}/version":

            def version() -> tuple[int, bytes, str]:
                return 200, json.dumps({"version": emulator.version}).encode(), "application/json"

            self._serve(url.path, "version", query, version, head)
        elif url.path == f"{API_PREFIX}/files":
            self._serve(url.path, "files", query, lambda: emulator._file(self._api_key(), query.get("id")), head)
        else:
            emulator._log_request(self.command, url.path, None, query)
            self._send(404, b"Not found", "text/plain", head)

    def _serve(
        self,
        path: str,
        operation: str | None,
        variables: Any,
        run: Callable[[], tuple[int, bytes, str]],
        head: bool = False,
    ) -> None:
        emulator = self.server.emulator
        emulator._log_request(self.command, path, operation, variables)
        fault = emulator._take_fault(operation)
        if fault is None:
            self._send(*run(), head=head)
            return
        if fault.fault == "timeout":
            # A slow backend: the work happens after the delay (or before it, with apply_first),
            # and the answer is sent if anyone is still listening.
            answer = run() if fault.apply_first else None
            if emulator._stopping.wait(emulator.timeout_seconds):
                self.close_connection = True
                return
            self._send(*(answer or run()), head=head)
            return
        if fault.apply_first:
            run()  # the backend did the work; the answer is lost on the way back
        if fault.fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        status = int(fault.fault)
        reason = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway"}[status]
        headers = {} if emulator.retry_after is None else {"Retry-After": f"{emulator.retry_after:g}"}
        # Plain text, as a proxy or rate limiter answers: not a GraphQL body.
        self._send(status, f"{status} {reason}".encode(), "text/plain", head, headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)  # the SDK compresses bodies over 1 MB
        return body

    def _api_key(self) -> str | None:
        value = self.headers.get("Authorization") or ""
        prefix = "X-API-Key:"
        return value[len(prefix) :].strip() if value.startswith(prefix) else None

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        head: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, emulator: KiliEmulator) -> None:
        self.emulator = emulator
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout fault, stop()) makes the late answer fail: expected.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class KiliEmulator:
    """One Kili project, its assets, labels and issues, served over HTTP on 127.0.0.1.

    State is plain data that tests may read (and, under care, edit): `assets` by id, `labels`,
    `issues` (each with id, type, status, content, labelId, assetId, objectMid, createdAt) and
    `requests`, one entry per HTTP request received.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        project_id: str = "project-1",
        json_interface: dict | None = None,
        input_type: str = "TEXT",
        title: str = "Emulated project",
    ) -> None:
        self.api_key = api_key
        self.project_id = project_id
        self.json_interface: dict = json_interface if json_interface is not None else {"jobs": {}}
        self.input_type = input_type
        self.title = title
        # Unique per instance: the SDK caches the introspected schema by endpoint and version.
        self.version = f"2.999.0+emulator.{uuid.uuid4().hex[:12]}"
        self.assets: dict[str, dict] = {}
        self._labels: list[dict] = []  # read through `labels`
        self.issues: list[dict] = []
        self.requests: list[dict] = []
        # Seconds a "timeout" fault holds the answer: more than the SDK's 60 s read timeout.
        self.timeout_seconds: float = 65
        # When set, 429/500/502 faults carry this Retry-After header, which the SDK honours.
        self.retry_after: float | None = None
        self._lock = threading.RLock()
        self._clock = _Clock()
        self._created_at = self._clock.now()
        self._faults: list[_Fault] = []
        self._files: dict[str, tuple[str, str]] = {}  # content token -> (asset id, text)
        self._next_label = 1
        self._next_issue = 1
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._created: dict[str, int] = {}  # asset id -> creation order
        # Each asset's labels, oldest first (createdAt, then creation order), kept up to date by every change: a
        # mutation then costs what its own assets hold. Removed labels leave `_labels` at its next read (`labels`).
        self._labels_by_asset: dict[str, list[dict]] = {}
        self._removed: set[str] = set()
        # What queries read, kept until the next change (a mutation, or a test's add_*/set_text): at 100,000 assets
        # a page of a paginated query must not scan every asset, nor each asset's view every label.
        self._matching: dict[tuple[str, str], list[dict]] = {}
        self._caching = True

    @property
    def labels(self) -> list[dict]:
        """Every label, in creation order (always the same list: a removal is applied to it here, on first read)."""
        with self._lock:
            if self._removed:
                self._labels[:] = [label for label in self._labels if label["id"] not in self._removed]
                self._removed.clear()
            return self._labels

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        """Around a change: nothing read while it is made is kept, and nothing kept before it survives it."""
        self._caching = False
        try:
            yield
        finally:
            self._matching.clear()
            self._caching = True

    def _kept(self, kind: str, where: dict, compute: Callable[[], list[dict]]) -> list[dict]:
        if not self._caching:
            return compute()
        key = (kind, json.dumps(where, sort_keys=True, default=str))
        if key not in self._matching:
            self._matching[key] = compute()
        return self._matching[key]

    # ---- lifecycle

    @property
    def base_url(self) -> str:
        host, port = self._bind().server_address[:2]
        return f"http://{host}:{port}{API_PREFIX}"

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/graphql"

    def start(self) -> KiliEmulator:
        server = self._bind()
        if self._thread is None:
            # A short poll interval: stop() waits for the serving loop to notice the shutdown.
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kili-emulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes the requests held by "timeout" faults
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=5)
            with self._lock:
                connections = list(self._connections)
            for connection in connections:  # idle keep-alive connections would outlive the server
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server.server_close()
        self._server, self._thread = None, None

    def __enter__(self) -> KiliEmulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _bind(self) -> _Server:
        # Bound on first need, so that assets added before start() already have their URL.
        if self._server is None:
            if self._stopping.is_set():
                raise RuntimeError("the emulator was stopped")
            self._server = _Server(self)
        return self._server

    def _register_connection(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    # ---- state

    def add_asset(
        self, asset_id: str, text: str, external_id: str | None = None, updated_at: str | None = None
    ) -> dict:
        """Add a text asset; its `content` is a URL served by the emulator, like Kili's uploads."""
        with self._lock, self._mutating():
            if asset_id in self.assets:
                raise ValueError(f"asset {asset_id} already exists")
            stamp = self._clock.observe(updated_at) if updated_at is not None else self._clock.now()
            asset = {
                "id": asset_id,
                "externalId": external_id if external_id is not None else asset_id,
                "content": self._store_text(asset_id, text),
                "text": text,
                "createdAt": stamp,
                "updatedAt": stamp,
            }
            self.assets[asset_id] = asset
            self._created[asset_id] = len(self._created)
            return asset

    def set_text(self, asset_id: str, text: str) -> None:
        """Replace the text of an asset: a new content URL (uploads are immutable), a new updatedAt."""
        with self._lock, self._mutating():
            asset = self.assets[asset_id]
            asset["text"] = text
            asset["content"] = self._store_text(asset_id, text)
            asset["updatedAt"] = self._clock.now()

    def add_label(
        self,
        asset_id: str,
        label_type: str,
        json_response: dict,
        created_at: str | None = None,
        model_name: str | None = None,
    ) -> dict:
        """Add a label as a labeler or a model would; the asset's updatedAt moves forward."""
        if label_type not in LABEL_TYPES:
            raise ValueError(f"label type {label_type!r} is not one of {LABEL_TYPES}")
        with self._lock, self._mutating():
            asset = self.assets[asset_id]
            label = self._new_label(asset_id, label_type, json_response, model_name, created_at)
            asset["updatedAt"] = self._clock.now()
            return label

    def add_issue(
        self, label_id: str, text: str | None, status: str = "OPEN", created_at: str | None = None
    ) -> dict:
        """Add an ISSUE on a label, as a reviewer would in the app (a SOLVED one, say)."""
        if status not in ISSUE_STATUSES:
            raise ValueError(f"issue status {status!r} is not one of {ISSUE_STATUSES}")
        with self._lock, self._mutating():
            [label] = [label for label in self.labels if label["id"] == label_id]
            return self._new_issue("ISSUE", label["assetId"], label_id, None, text, status, created_at)

    def inject(self, fault: str, operation: str, times: int = 1, apply_first: bool = False) -> None:
        """Make the next `times` requests for `operation` fail with `fault`.

        `operation` is the first root field of a GraphQL document ("assets", "appendManyLabels",
        "viewer", ...), "files" for content GETs or "version".
        - "429", "500", "502": that status with a plain-text body, as a rate limiter or proxy sends.
        - "drop": the connection is closed once the request is read, with no answer.
        - "timeout": the answer comes after `timeout_seconds` (default 65, over the SDK's 60 s).
          The request is carried out after the delay, as a slow backend would, even if the client
          gave up meanwhile; stop() abandons it.
        With apply_first, the request is carried out first, then fails: a mutation lands and the
        client cannot tell.
        """
        if fault not in FAULTS:
            raise ValueError(f"fault {fault!r} is not one of {FAULTS}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(_Fault(fault, operation, times, apply_first))

    @property
    def pending_faults(self) -> list[str]:
        """Injected faults not yet delivered (a test asserts it is empty, so an unused injection cannot pass)."""
        with self._lock:
            return [f"{f.fault} on {f.operation}" for f in self._faults]

    def calls(self, operation: str) -> int:
        """How many requests for `operation` were received (faulted ones included)."""
        with self._lock:
            return sum(1 for request in self.requests if request["operation"] == operation)

    def writes(self, since: int = 0) -> list[str]:
        """The mutations among the requests received from the `since`-th on."""
        names = set(SCHEMA.mutation_type.fields)
        with self._lock:
            return [r["operation"] for r in self.requests[since:] if r["operation"] in names]

    def _store_text(self, asset_id: str, text: str) -> str:
        token = uuid.uuid4().hex
        self._files[token] = (asset_id, text)
        return f"{self.base_url}/files?{urlencode({'id': token})}"

    def _new_label(
        self, asset_id: str, label_type: str, json_response: dict, model_name: str | None, created_at: str | None
    ) -> dict:
        label = {
            "id": f"label-{self._next_label}",
            "assetId": asset_id,
            "labelType": label_type,
            "jsonResponse": json_response,
            "createdAt": self._clock.observe(created_at) if created_at is not None else self._clock.now(),
            "modelName": model_name,
        }
        self._next_label += 1
        self._labels.append(label)
        # after those of the same createdAt: the order a stable sort of every label by createdAt gives
        bisect.insort(self._labels_by_asset.setdefault(asset_id, []), label, key=_label_time)
        return label

    def _remove_labels(self, labels: list[dict]) -> None:
        doomed = {label["id"] for label in labels}
        for asset_id in {label["assetId"] for label in labels}:
            kept = [label for label in self._labels_by_asset[asset_id] if label["id"] not in doomed]
            self._labels_by_asset[asset_id] = kept
        self._removed |= doomed

    def _new_issue(
        self,
        type_: str,
        asset_id: str,
        label_id: str | None,
        object_mid: str | None,
        text: str | None,
        status: str = "OPEN",
        created_at: str | None = None,
    ) -> dict:
        issue = {
            "id": f"issue-{self._next_issue}",
            "number": self._next_issue,
            "type": type_,
            "status": status,
            "content": text,
            "labelId": label_id,
            "assetId": asset_id,
            "objectMid": object_mid,
            "createdAt": self._clock.observe(created_at) if created_at is not None else self._clock.now(),
        }
        self._next_issue += 1
        self.issues.append(issue)
        return issue

    # ---- HTTP plumbing

    def _log_request(self, method: str, path: str, operation: str | None, variables: Any) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "operation": operation, "variables": variables})

    def _take_fault(self, operation: str | None) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation == operation and fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _file(self, api_key: str | None, token: str | None) -> tuple[int, bytes, str]:
        if api_key != self.api_key:
            return 401, b"Unauthorized", "text/plain"
        with self._lock:
            stored = self._files.get(token or "")
        if stored is None:
            return 404, b"Not found", "text/plain"
        return 200, stored[1].encode("utf-8"), "text/plain; charset=utf-8"

    def _graphql(
        self, api_key: str | None, document: DocumentNode | None, query: str, variables: Any
    ) -> tuple[int, dict]:
        if api_key != self.api_key:
            # A GraphQL-shaped 401: the SDK's `viewer` check fails on the status, and a query sent
            # with a bad key fails at once instead of being retried for two minutes.
            return 401, {"errors": [_error("Unauthorized: invalid API key", "UNAUTHENTICATED")]}
        if document is None:
            try:
                parse(query)
            except GraphQLError as err:
                return 400, {"errors": [_error(err.message, "GRAPHQL_PARSE_FAILED")]}
            return 400, {"errors": [_error("The body must be JSON with a GraphQL query", "BAD_REQUEST")]}
        errors = validate(SCHEMA, document)
        if errors:
            return 400, {"errors": [_error(err.message, "GRAPHQL_VALIDATION_FAILED") for err in errors]}
        if not isinstance(variables, dict):
            return 400, {"errors": [_error("variables must be an object", "BAD_USER_INPUT")]}
        with self._lock:  # one operation at a time: a mutation is atomic
            mutation = any(isinstance(d, OperationDefinitionNode) and d.operation == OperationType.MUTATION
                           for d in document.definitions)
            with self._mutating() if mutation else contextlib.nullcontext():
                # Root fields resolve from this mapping: graphql-core calls its values with (info, **args).
                result = execute(SCHEMA, document, root_value=self._resolvers(), variable_values=variables)
        if not result.errors:
            return 200, {"data": result.data}
        formatted = []
        for err in result.errors:
            item = err.formatted
            # Kili's errors always carry extensions: the SDK crashes on ones without.
            item.setdefault("extensions", {"code": "BAD_USER_INPUT" if err.path is None else "INTERNAL_SERVER_ERROR"})
            formatted.append(item)
        if result.data is None and all(err.path is None for err in result.errors):
            # variables that do not fit their types: refused before execution, like Apollo does
            return 400, {"errors": formatted}
        return 200, {"data": result.data, "errors": formatted}

    # ---- GraphQL views of the state (called with the lock held)

    def _project_view(self) -> dict:
        return {
            "id": self.project_id,
            "title": self.title,
            "description": "",
            "inputType": self.input_type,
            "jsonInterface": json.dumps(self.json_interface),
            "workflowVersion": "V2",
            "steps": [{"id": f"{self.project_id}-step-labeling", "name": "Labeling", "type": "DEFAULT", "order": 0}],
            "archived": False,
            "createdAt": self._created_at,
            "updatedAt": self._created_at,
        }

    def _asset_labels(self, asset_id: str) -> list[dict]:
        """The asset's labels as they are now, oldest first (a copy: later changes do not reach it)."""
        return list(self._labels_by_asset.get(asset_id, ()))

    def _asset_status(self, asset_id: str) -> str:
        human = [label["labelType"] for label in self._labels_by_asset.get(asset_id, ())
                 if label["labelType"] in ("DEFAULT", "REVIEW")]
        return "REVIEWED" if "REVIEW" in human else "LABELED" if human else "TODO"

    def _asset_view(self, asset: dict) -> dict:
        labels = self._asset_labels(asset["id"])
        status = self._asset_status(asset["id"])
        return {
            "id": asset["id"],
            "externalId": asset["externalId"],
            "content": asset["content"],
            "jsonContent": "",
            "jsonMetadata": "{}",
            "createdAt": asset["createdAt"],
            "updatedAt": asset["updatedAt"],
            "status": status,
            "currentStep": {
                "id": f"{self.project_id}-step-labeling",
                "name": "Labeling",
                "status": "TO_DO" if status == "TODO" else "DONE",
                "stepGroupName": None,
            },
            "skipped": False,
            "isHoneypot": False,
            "priority": asset.get("priority", 0),
            "resolution": None,
            # resolved only when asked for: a label's asset and an asset's labels refer to each other
            "project": lambda _info: self._project_view(),
            "labels": lambda _info: [self._label_view(label) for label in labels],
            "issues": lambda _info: [self._issue_view(issue) for issue in self._asset_issues(asset["id"])],
        }

    def _label_view(self, label: dict) -> dict:
        latest = self._labels_by_asset[label["assetId"]][-1]
        return {
            "id": label["id"],
            "assetId": label["assetId"],
            "labelType": label["labelType"],
            # A str is kept as it is: a label whose stored JSON is damaged (truncated), as a test may need.
            "jsonResponse": label["jsonResponse"] if isinstance(label["jsonResponse"], str)
            else json.dumps(label["jsonResponse"]),
            "jsonResponseUrl": None,
            "modelName": label["modelName"],
            "createdAt": label["createdAt"],
            "author": VIEWER,
            "isLatestLabelForUser": latest is label,
            "secondsToLabel": None,
            "labelOf": lambda _info: self._asset_view(self.assets[label["assetId"]]),
        }

    def _asset_issues(self, asset_id: str) -> list[dict]:
        return [issue for issue in self._sorted_issues() if issue["assetId"] == asset_id]

    def _sorted_issues(self) -> list[dict]:
        return sorted(self.issues, key=lambda issue: parse_timestamp(issue["createdAt"]))

    def _issue_view(self, issue: dict) -> dict:
        comments = [] if issue["content"] is None else [{
            "id": f"{issue['id']}-comment-1",
            "issueId": issue["id"],
            "text": issue["content"],
            "createdAt": issue["createdAt"],
            "authorIdUser": VIEWER["id"],
        }]  # fmt: skip
        return {
            "id": issue["id"],
            "type": issue["type"],
            "status": issue["status"],
            "assetId": issue["assetId"],
            "labelId": issue["labelId"],
            "objectMid": issue["objectMid"],
            "createdAt": issue["createdAt"],
            "issueNumber": issue["number"],
            "hasBeenSeen": False,
            "author": VIEWER,
            "comments": comments,
        }

    # ---- filters

    def _project_matches(self, where: dict | None) -> bool:
        where = where or {}
        _unsupported("ProjectWhere", where, {"id", "archived", "deleted", "searchQuery"})
        if where.get("id") is not None and where["id"] != self.project_id:
            return False
        if where.get("archived"):  # the emulated project is never archived
            return False
        search = where.get("searchQuery")
        return not search or search.lower() in self.title.lower()

    def _asset_matches(self, asset: dict, where: dict | None) -> bool:
        where = where or {}
        _unsupported(
            "AssetWhere",
            where,
            {
                "id", "idIn", "idNotIn", "project", "externalIdIn", "externalIdStrictlyIn", "statusIn",
                "updatedAtGte", "updatedAtLte", "createdAtGte", "createdAtLte", "label", "issue",
            },
        )  # fmt: skip
        _unsupported("AssetWhere.label", where.get("label") or {}, {"typeIn"})
        _unsupported("AssetWhere.issue", where.get("issue") or {}, {"type", "status"})
        if "project" in where and not self._project_matches(where["project"]):
            return False
        if where.get("id") is not None and asset["id"] != where["id"]:
            return False
        if where.get("idIn") is not None and asset["id"] not in where["idIn"]:
            return False
        if where.get("idNotIn") is not None and asset["id"] in where["idNotIn"]:
            return False
        if where.get("externalIdStrictlyIn") is not None and asset["externalId"] not in where["externalIdStrictlyIn"]:
            return False
        parts = where.get("externalIdIn")
        if parts is not None and not any(part in asset["externalId"] for part in parts):  # partial match
            return False
        if where.get("statusIn") is not None and self._asset_status(asset["id"]) not in where["statusIn"]:
            return False
        if not _in_range(asset["updatedAt"], where.get("updatedAtGte"), where.get("updatedAtLte")):
            return False
        if not _in_range(asset["createdAt"], where.get("createdAtGte"), where.get("createdAtLte")):
            return False
        type_in = (where.get("label") or {}).get("typeIn")
        labels = self._labels_by_asset.get(asset["id"], ())
        if type_in is not None and not any(label["labelType"] in type_in for label in labels):
            return False
        issue = {key: value for key, value in (where.get("issue") or {}).items() if value is not None}
        # with an issue filter: the assets that have at least one such issue
        return not issue or any(self._issue_matches(found, issue) for found in self._asset_issues(asset["id"]))

    def _label_matches(self, label: dict, where: dict) -> bool:
        _unsupported("LabelWhere", where, {"id", "idIn", "project", "asset", "typeIn", "createdAtGte", "createdAtLte"})
        if "project" in where and not self._project_matches(where["project"]):
            return False
        if where.get("id") is not None and label["id"] != where["id"]:
            return False
        if where.get("idIn") is not None and label["id"] not in where["idIn"]:
            return False
        if where.get("typeIn") is not None and label["labelType"] not in where["typeIn"]:
            return False
        if not _in_range(label["createdAt"], where.get("createdAtGte"), where.get("createdAtLte")):
            return False
        return "asset" not in where or self._asset_matches(self.assets[label["assetId"]], where["asset"])

    def _issue_matches(self, issue: dict, where: dict) -> bool:
        _unsupported("IssueWhere", where, {"id", "project", "asset", "assetIn", "type", "status"})
        if "project" in where and not self._project_matches(where["project"]):
            return False
        if where.get("id") is not None and issue["id"] != where["id"]:
            return False
        if where.get("assetIn") is not None and issue["assetId"] not in where["assetIn"]:
            return False
        if where.get("type") is not None and issue["type"] != where["type"]:
            return False
        if where.get("status") is not None and issue["status"] != where["status"]:
            return False
        # the SDK sends `asset: {id}`, or `asset: {}` once its client has dropped the null id
        return not where.get("asset") or self._asset_matches(self.assets[issue["assetId"]], where["asset"])

    def _matching_issues(self, where: dict) -> list[dict]:
        # Creation order, as the SDK documents for `skip`.
        return [issue for issue in self._sorted_issues() if self._issue_matches(issue, where)]

    def _matching_assets(self, where: dict) -> list[dict]:
        # Creation order, as Kili documents for `skip`: stable while assets are updated mid-pagination.
        def scan() -> list[dict]:
            named = where.get("idIn") if isinstance(where, dict) else None
            candidates = (self.assets.values() if named is None else  # only those named (a batch's lookups)
                          sorted((self.assets[i] for i in set(named) if i in self.assets),
                                 key=lambda asset: self._created[asset["id"]]))
            return [asset for asset in candidates if self._asset_matches(asset, where)]
        return self._kept("assets", where, scan)

    def _matching_labels(self, where: dict) -> list[dict]:
        def scan() -> list[dict]:
            labels = sorted(self.labels, key=_label_time)
            return [label for label in labels if self._label_matches(label, where)]
        return self._kept("labels", where, scan)

    # ---- resolvers

    def _resolve_api_keys(self, _info: GraphQLResolveInfo, where: dict, skip: int, first: int) -> list[dict]:
        return self._api_keys(where)[skip : skip + first]

    def _resolve_count_api_keys(self, _info: GraphQLResolveInfo, where: dict) -> int:
        return len(self._api_keys(where))

    def _api_keys(self, where: dict) -> list[dict]:
        _unsupported("ApiKeyWhere", where, {"id", "key", "user"})
        key = {
            "id": "api-key-1",
            "name": "emulated key",
            "key": self.api_key,
            "createdAt": self._created_at,
            "expiryDate": API_KEY_EXPIRY,
            "revoked": False,
        }
        user_id = (where.get("user") or {}).get("id")
        if where.get("key") not in (None, self.api_key) or where.get("id") not in (None, key["id"]):
            return []
        if user_id not in (None, VIEWER["id"]):
            return []
        return [key]

    def _resolve_projects(self, _info: GraphQLResolveInfo, where: dict, skip: int, first: int) -> list[dict]:
        # An unknown id is no error: Kili answers an empty list (and countProjects 0), which the
        # SDK turns into [] for projects() and into NotFound where it needs the project.
        return ([self._project_view()] if self._project_matches(where) else [])[skip : skip + first]

    def _resolve_count_projects(self, _info: GraphQLResolveInfo, where: dict) -> int:
        return 1 if self._project_matches(where) else 0

    def _resolve_assets(self, _info: GraphQLResolveInfo, where: dict, skip: int, first: int) -> list[dict]:
        return [self._asset_view(asset) for asset in self._matching_assets(where)[skip : skip + first]]

    def _resolve_count_assets(self, _info: GraphQLResolveInfo, where: dict) -> int:
        return len(self._matching_assets(where))

    def _resolve_labels(self, _info: GraphQLResolveInfo, where: dict, skip: int, first: int) -> list[dict]:
        return [self._label_view(label) for label in self._matching_labels(where)[skip : skip + first]]

    def _resolve_count_labels(self, _info: GraphQLResolveInfo, where: dict) -> int:
        return len(self._matching_labels(where))

    def _resolve_append_many_labels(self, _info: GraphQLResolveInfo, data: dict, where: dict) -> list[dict]:
        """All or nothing: every item is checked before any label is written."""
        label_type = data["labelType"]
        items = data["labelsData"]
        if data.get("stepId") is not None:
            raise ApiError("stepId is not supported by the emulator", "EmulatorUnsupported")
        if "project" in where and not self._project_matches(where["project"]):
            raise ApiError(f"Project {where['project'].get('id')} not found", "ProjectNotFound")
        selected = {asset["id"] for asset in self._matching_assets(where)}
        missing = sorted({item["assetID"] for item in items} - selected)
        if missing:
            raise ApiError(f"Assets not found in the project: {', '.join(missing)}", "AssetNotFound", assetIds=missing)
        responses = []
        for index, item in enumerate(items):
            try:
                response = json.loads(item["jsonResponse"])
            except ValueError:
                response = None
            if not isinstance(response, dict):
                raise ApiError(f"labelsData[{index}].jsonResponse is not a JSON object", "InvalidJsonResponse")
            responses.append(response)
        if data.get("overwrite"):
            replaced = {(item["assetID"], item.get("modelName")) for item in items}
            self._remove_labels([label for asset_id in {asset_id for asset_id, _ in replaced}
                                 for label in self._labels_by_asset.get(asset_id, ())
                                 if label["labelType"] == label_type and (asset_id, label["modelName"]) in replaced])
        created = [
            self._new_label(item["assetID"], label_type, response, item.get("modelName"), None)
            for item, response in zip(items, responses, strict=True)
        ]
        for asset_id in dict.fromkeys(item["assetID"] for item in items):
            self.assets[asset_id]["updatedAt"] = self._clock.now()
        return [self._label_view(label) for label in created]

    def _resolve_set_assets_priority(self, _info: GraphQLResolveInfo, where: dict, priority: int) -> dict:
        outcome: dict[str, list[dict]] = {"succeeded": [], "declined": [], "failed": []}
        for asset in self._matching_assets(where):
            ref = {"assetId": asset["id"], "externalId": asset["externalId"]}
            if self._asset_status(asset["id"]) == "TODO":
                asset["priority"] = priority
                outcome["succeeded"].append(ref)
            else:
                outcome["declined"].append(ref)
        return outcome

    def _resolve_issues(self, _info: GraphQLResolveInfo, where: dict, skip: int, first: int) -> list[dict]:
        return [self._issue_view(issue) for issue in self._matching_issues(where)[skip : skip + first]]

    def _resolve_count_issues(self, _info: GraphQLResolveInfo, where: dict) -> int:
        return len(self._matching_issues(where))

    def _resolve_create_issues(self, _info: GraphQLResolveInfo, issues: list[dict], where: dict) -> list[dict]:
        """All or nothing: every item is checked before any issue is written. An ISSUE's asset is its label's."""
        if "project" in where and not self._project_matches(where["project"]):
            raise ApiError(f"Project {where['project'].get('id')} not found", "ProjectNotFound")
        selected = {asset["id"] for asset in self._matching_assets(where)}
        labels = {label["id"]: label for asset_id in selected for label in self._labels_by_asset.get(asset_id, ())}
        missing = sorted({item["labelID"] for item in issues if item.get("labelID") and item["labelID"] not in labels})
        if missing:
            raise ApiError(f"Labels not found in the project: {', '.join(missing)}", "LabelNotFound", labelIds=missing)
        asset_ids = [_issue_asset(index, item, labels) for index, item in enumerate(issues)]
        missing = sorted({asset_id for asset_id in asset_ids if asset_id not in selected})
        if missing:
            raise ApiError(f"Assets not found in the project: {', '.join(missing)}", "AssetNotFound", assetIds=missing)
        created = [
            self._new_issue(item["type"], asset_id, item.get("labelID"), item.get("objectMid"), item.get("text"))
            for item, asset_id in zip(issues, asset_ids, strict=True)
        ]
        return [self._issue_view(issue) for issue in created]

    def _resolvers(self) -> dict[str, Callable[..., Any]]:
        return {
            "viewer": lambda _info: VIEWER,
            "apiKeys": self._resolve_api_keys,
            "countApiKeys": self._resolve_count_api_keys,
            "projects": self._resolve_projects,
            "countProjects": self._resolve_count_projects,
            "assets": self._resolve_assets,
            "countAssets": self._resolve_count_assets,
            "labels": self._resolve_labels,
            "countLabels": self._resolve_count_labels,
            "issues": self._resolve_issues,
            "countIssues": self._resolve_count_issues,
            "appendManyLabels": self._resolve_append_many_labels,
            "setAssetsPriority": self._resolve_set_assets_priority,
            "createIssues": self._resolve_create_issues,
        }


def _unsupported(type_name: str, where: dict, supported: Iterable[str]) -> None:
    """Refuse a filter the emulator does not implement, rather than answer as if it matched."""
    unknown = sorted(key for key, value in where.items() if value not in (None, {}) and key not in set(supported))
    if unknown:
        message = f"{type_name} filters not supported by the emulator: {', '.join(unknown)}"
        raise ApiError(message, "EmulatorUnsupported")


def _issue_asset(index: int, item: dict, labels: dict[str, dict]) -> str:
    """The asset an IssueToCreate goes on: its label's (an ISSUE), or the one it names (a QUESTION)."""
    label_id, asset_id = item.get("labelID"), item.get("assetId")
    if item["type"] == "ISSUE" and label_id is None:
        raise ApiError(f"issues[{index}]: an ISSUE needs a labelID", "InvalidIssue")
    if label_id is None:
        if asset_id is None:
            raise ApiError(f"issues[{index}]: a QUESTION needs an assetId", "InvalidIssue")
        return asset_id
    found = labels[label_id]["assetId"]
    if asset_id is not None and asset_id != found:
        raise ApiError(f"issues[{index}]: label {label_id} is not on asset {asset_id}", "InvalidIssue")
    return found


def _label_time(label: dict) -> datetime:
    return parse_timestamp(label["createdAt"])


def _in_range(stamp: str, gte: str | None, lte: str | None) -> bool:
    if gte is None and lte is None:  # no range: a scan of every asset need not parse their stamps
        return True
    moment = parse_timestamp(stamp)
    return (gte is None or moment >= parse_timestamp(gte)) and (lte is None or moment <= parse_timestamp(lte))


def isolate_kili_sdk(monkeypatch: Any, home: Path) -> None:
    """Run the real SDK against an emulator with its start-up checks on, leaving no trace outside `home`.

    `monkeypatch` is pytest's fixture. The SDK reads its schema cache directory from Path.home()
    once, when kili is imported (usually at test collection, with the real HOME): setting HOME is
    not enough, so the default of GraphQLClient is redirected too. The SDK's adaptive page and
    batch sizes are process-wide and shrink after a 5xx, a timeout or a dropped connection: they
    are reset so that one test's faults do not change the requests of the next.
    """
    from kili.core.graphql import graphql_client  # the SDK is imported only by tests that use it
    from kili.core.utils.batching import mutation_batch_sizer, query_page_sizer

    cache = home / ".cache"
    schema_cache = cache / "kili" / "graphql"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("KILI_DISABLE_TQDM", "1")
    for name in ("KILI_SDK_SKIP_CHECKS", "KILI_API_KEY", "KILI_API_ENDPOINT", "KILI_VERIFY"):
        monkeypatch.delenv(name, raising=False)
    init = graphql_client.GraphQLClient.__init__
    default = graphql_client.DEFAULT_GRAPHQL_SCHEMA_CACHE_DIR
    defaults = tuple(schema_cache if value is default else value for value in init.__defaults__ or ())
    monkeypatch.setattr(init, "__defaults__", defaults)
    monkeypatch.setattr(graphql_client, "DEFAULT_GRAPHQL_SCHEMA_CACHE_DIR", schema_cache)
    query_page_sizer.reset()
    mutation_batch_sizer.reset()
