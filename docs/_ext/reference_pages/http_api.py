"""The HTTP API reference: every route of the app `service.app.api.create_app` builds (over a throwaway state
folder), from its OpenAPI document; which routes need the token and which forms of it are taken, asked of the app
itself; and the statuses each route answers with their messages, read from the code of its endpoint, its
dependencies and the app's middleware."""

from __future__ import annotations

import ast
import asyncio
import base64
import inspect
import json
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference_pages.markdown import code, heading, inline, paragraphs, table

__all__ = ["TOKEN", "Answer", "accepted_forms", "built_app", "page", "read_endpoint", "status"]

TOKEN = "reference-token"  # the throwaway app's token
# Forms of the Authorization header tried against a guarded route; the page lists those the app takes.
_FORMS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("`Authorization: Bearer <token>`", lambda t: f"Bearer {t}"),
    ("`Authorization: Token <token>`", lambda t: f"Token {t}"),
    ("Basic auth with the token as the password (any user name)",
     lambda t: "Basic " + base64.b64encode(f"user:{t}".encode()).decode()),
    ("Basic auth with the token as the user name (no password)",
     lambda t: "Basic " + base64.b64encode(f"{t}:".encode()).decode()),
)


@contextmanager
def built_app() -> Iterator[Any]:
    """The API as `serve` builds it (default [api] settings), over an empty state folder that goes afterwards."""
    from service.app.api import create_app
    from service.config import ApiSettings
    from service.store.registry import ModelRegistry

    with tempfile.TemporaryDirectory(prefix="classie-reference-") as folder:
        yield create_app(ApiSettings(), TOKEN, ModelRegistry(Path(folder) / "models"), lambda: None)


def status(app: Any, method: str, path: str, authorization: str | None = None) -> int:
    """The status the app answers a request with no body (ASGI, in this process)."""
    headers = [(b"authorization", authorization.encode())] if authorization else []

    async def call() -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 1), "server": ("reference", 80)}
        await app(scope, receive, send)
        return next(m["status"] for m in sent if m["type"] == "http.response.start")

    return asyncio.run(call())


def accepted_forms(app: Any, method: str, path: str) -> list[str]:
    """The forms of the token that a guarded route takes (answers other than 401)."""
    return [name for name, header in _FORMS if status(app, method, path, header(TOKEN)) != 401]


@dataclass
class Answer:
    """What the code of an endpoint says it answers."""

    statuses: dict[int, list[str]] = field(default_factory=dict)  # status -> messages
    media_types: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # of the JSON object it returns
    body_fields: list[str] = field(default_factory=list)  # read from the JSON body


def _tree(function: Any) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(function)))


def _render(node: ast.AST | None, owner: Any) -> str:
    """A message argument: its literal text, {name} for each part computed when it is raised, or the value of a
    `self.attribute` of the live object."""
    if node is None:
        return ""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(_render(v, owner) if isinstance(v, ast.Constant) else _render(v, owner) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        inner = node.value
        name = inner.attr if isinstance(inner, ast.Attribute) else inner.id if isinstance(inner, ast.Name) else "…"
        return "{" + name + "}"
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
            and owner is not None and isinstance(getattr(owner, node.attr, None), str):
        return getattr(owner, node.attr)
    if isinstance(node, ast.Call) and len(node.args) == 1 and isinstance(node.args[0], ast.Name):
        return "{" + node.args[0].id + "}"  # str(exc)
    return "{…}"


def _resolve(node: ast.AST, function: Any, owner: Any) -> Any:
    """The object a name or `self.attribute` in `function` stands for, or None."""
    if isinstance(node, ast.Name):
        closure = inspect.getclosurevars(function)
        return {**closure.builtins, **closure.globals, **closure.nonlocals}.get(node.id, function.__globals__.get(
            node.id))
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" and owner:
        return getattr(type(owner), node.attr, None)
    return None


def _argument(call: ast.Call, position: int, keyword: str) -> ast.AST | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def read_endpoint(function: Any, owner: Any = None, answer: Answer | None = None,
                  seen: set | None = None) -> Answer:
    """The statuses `function` raises (HTTPException) or answers (a Response with a status_code), and the media
    types of the responses it makes, following the functions of its own module it refers to (and the methods of
    `owner`, the object it is bound to)."""
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    answer, seen = answer or Answer(), seen if seen is not None else set()
    function = getattr(function, "__func__", function)
    if function in seen:
        return answer
    seen.add(function)
    for node in ast.walk(_tree(function)):
        target = _resolve(node.func if isinstance(node, ast.Call) else node, function, owner) \
            if isinstance(node, ast.Call | ast.Name | ast.Attribute) else None
        if isinstance(node, ast.Call) and inspect.isclass(target) and issubclass(target, HTTPException | Response):
            _record(node, target, function, owner, answer, issubclass(target, HTTPException))
        elif inspect.isfunction(getattr(target, "__func__", target)) and \
                getattr(target, "__module__", None) == function.__module__:
            read_endpoint(target, owner, answer, seen)
    return answer


def _record(call: ast.Call, target: type, function: Any, owner: Any, answer: Answer, raised: bool) -> None:
    code_node = _argument(call, 0, "status_code") if raised else next(
        (k.value for k in call.keywords if k.arg == "status_code"), None)
    if isinstance(code_node, ast.Constant) and isinstance(code_node.value, int):
        message = _render(_argument(call, 1, "detail") if raised else _detail(call), owner)
        answer.statuses.setdefault(code_node.value, [])
        if message and message not in answer.statuses[code_node.value]:
            answer.statuses[code_node.value].append(message)
    if not raised:
        media = next((k.value for k in call.keywords if k.arg == "media_type"), None)
        value = media.value if isinstance(media, ast.Constant) else _resolve(media, function, owner) if media \
            else getattr(target, "media_type", None)
        if isinstance(value, str) and value not in answer.media_types:
            answer.media_types.append(value)


def _detail(call: ast.Call) -> ast.AST | None:
    """The "detail" of a JSON response's literal body, e.g. JSONResponse({"detail": ...}, status_code=413)."""
    body = _argument(call, 0, "content")
    if isinstance(body, ast.Dict):
        for key, value in zip(body.keys, body.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "detail":
                return value
    return None


def _returned_keys(function: Any, owner: Any) -> list[str]:
    """The keys of the dict literals `function` returns; else those of the methods its return statements name
    (an endpoint that hands its answer to a worker thread)."""
    tree, keys = _tree(function), list[str]()
    returns = [n for n in ast.walk(tree) if isinstance(n, ast.Return) and n.value is not None]
    for node in returns:
        if isinstance(node.value, ast.Dict):
            keys += [str(k.value) for k in node.value.keys if isinstance(k, ast.Constant)]
    if not keys and owner is not None:
        for node in returns:
            for ref in ast.walk(node):
                target = _resolve(ref, function, owner) if isinstance(ref, ast.Attribute) else None
                if inspect.isfunction(target):
                    keys += _returned_keys(target, owner)
    return list(dict.fromkeys(keys))


def _body_fields(function: Any) -> list[str]:
    """The fields an endpoint reads from its JSON body: `.get("x")` on the names bound to `await _json(...)` or
    `await request.json()`."""
    tree = _tree(function)
    bodies = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Await)
              and isinstance(n.value.value, ast.Call) and "json" in ast.unparse(n.value.value.func)
              for t in n.targets if isinstance(t, ast.Name)}
    return list(dict.fromkeys(
        str(n.args[0].value) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        and n.func.attr == "get" and isinstance(n.func.value, ast.Name) and n.func.value.id in bodies and n.args
        and isinstance(n.args[0], ast.Constant)))


def _middlewares(app: Any) -> Iterator[Any]:
    """The app's own middleware, as the live objects its stack holds (the stack is built at the first request)."""
    wanted = tuple(m.cls for m in app.user_middleware)
    layer = app.middleware_stack
    while layer is not None:
        if isinstance(layer, wanted):
            yield layer
        layer = getattr(layer, "app", None)


def _route_section(app: Any, route: Any, method: str, spec: dict[str, Any], every: Answer) -> str:
    from fastapi.routing import APIRoute

    operation = spec.get("paths", {}).get(route.path, {}).get(method.lower(), {})
    guarded = status(app, method, route.path) == 401
    title = code(f"{method} {route.path}")
    parts = [heading(2, title, "http-" + (route.path.strip("/").replace("/", "-").replace(".", "-") or "root")
                     + "-" + method.lower())]
    if operation.get("summary") or operation.get("description"):
        parts.append(paragraphs(" ".join(filter(None, [operation.get("summary", "") + ".",
                                                         operation.get("description", "")]))))
    parts.append("**Token:** " + ("needed." if guarded else "not needed."))
    answer = Answer()
    if isinstance(route, APIRoute):
        owner = getattr(route.endpoint, "__self__", None)
        read_endpoint(route.endpoint, owner, answer)
        for dependency in route.dependencies:
            read_endpoint(dependency.dependency, None, answer)
        answer.keys = _returned_keys(route.endpoint, owner)
        answer.body_fields = _body_fields(route.endpoint)
    if "requestBody" in operation:
        parts.append("**Request body** (OpenAPI):\n\n```json\n" + json.dumps(operation["requestBody"], indent=1)
                     + "\n```")
    elif answer.body_fields:
        parts.append("**Request body:** a JSON object; the endpoint reads " + ", ".join(
            code(f) for f in answer.body_fields) + " (not declared in the OpenAPI document).")
    parameters = operation.get("parameters", [])
    if parameters:
        parts.append(table(["Parameter", "In", "Required", "Schema"],
                           [[code(p["name"]), p.get("in", ""), "yes" if p.get("required") else "",
                             code(json.dumps(p.get("schema", {})))] for p in parameters]))
    rows = []
    for number, response in sorted(operation.get("responses", {"200": {}}).items()):
        kinds = answer.media_types or sorted(response.get("content", {})) or ["application/json"]
        content: dict[str, Any] = next(iter(response.get("content", {}).values()), {})
        schema = content.get("schema", {})
        said = [response.get("description", "")]
        if answer.keys:
            said.append("a JSON object with " + ", ".join(code(k) for k in answer.keys))
        elif schema and not answer.media_types:
            said.append("schema " + code(json.dumps(schema)))
        rows.append([code(number), ", ".join(code(k) for k in kinds), "; ".join(inline(s) for s in said if s)])
    statuses = dict(answer.statuses)
    for number, messages in every.statuses.items():
        statuses.setdefault(number, []).extend(m for m in messages if m not in statuses[number])
    rows += [[code(number), code("application/json"), inline("; ".join(f'"{m}"' for m in messages))]
             for number, messages in sorted(statuses.items()) if number != 401 or guarded]
    parts.append(table(["Status", "Media type", "Answer"], rows))
    return "\n\n".join(parts)


def page() -> str:
    from reference_pages.cli import PROGRAM, commands

    serve = next(command for path, command, _ in commands() if path == ["serve"])
    with built_app() as app:
        spec = app.openapi()
        routes = [r for r in app.routes if getattr(r, "methods", None)]
        for route in routes:  # builds the middleware stack too
            status(app, sorted(route.methods - {"HEAD"})[0], route.path)
        every = Answer()
        for middleware in _middlewares(app):
            read_endpoint(type(middleware).__call__, middleware, every)
        guarded = [r for r in routes if status(app, sorted(r.methods - {"HEAD"})[0], r.path) == 401]
        forms = accepted_forms(app, sorted(guarded[0].methods - {"HEAD"})[0], guarded[0].path) if guarded else []
        open_routes = [r.path for r in routes if r not in guarded]
        sections = [_route_section(app, r, method, spec, every) for r in routes
                    for method in sorted(r.methods - {"HEAD"})]
    auth = (f"Every route but {', '.join(code(p) for p in open_routes)} needs the token"
            f" (`CLASSIE_API_TOKEN`); without it, or with a wrong one, the answer is 401. The token is taken as "
            + "; or ".join(forms) + ".") if guarded else "No route needs a token."
    return "\n\n".join([
        heading(1, "HTTP API", "reference-http-api"),
        f"Generated from the code at each build: the routes of the app that {code(PROGRAM + ' serve')} runs"
        " (`service.app.api.create_app`), from its OpenAPI document (`/openapi.json`), with the statuses and"
        " messages its code answers (a message's `{name}` is filled in when it is raised; the figures are those of"
        " the default settings). The `serve` command:",
        paragraphs(serve.help or ""),
        heading(2, "Authentication", "http-authentication"), auth, *sections]) + "\n"
