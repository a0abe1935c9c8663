"""Label Studio's labelling config <-> the service's taxonomy: each `<Taxonomy>` control is a hierarchical facet, each
`<Choices>` control a flat one; results translate to and from codes.

A node's code is `CONTROL:path`, the path being the choice keys from the root joined by `/` (a key is the choice's
`alias` where given, else its `value`). Keys are only unique among siblings, so the path is the identity.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from automl.errors import InputError
from automl.records import Proposal
from automl.taxonomy import Node, Taxonomy

__all__ = ["Control", "LabelConfigError", "LabelStudioSchema", "node_code", "parse_label_config", "prediction"]


def node_code(control: str, path: Iterable[str]) -> str:
    """A node's code: its control's name and its key path from the root (see the module docstring)."""
    return f"{control}:{'/'.join(path)}"


def prediction(proposals: Iterable[Proposal], model_version: str, schema: LabelStudioSchema | None,
               score: float) -> dict:
    """A Label Studio prediction of one task (without the task): the result items for the schema's controls (none
    without a schema) and `score`, which the Data Manager sorts by: the service gives its priority (how much a human
    label of the task would help), so that sorting by prediction score, descending, puts the next task first."""
    return {"model_version": model_version, "score": round(float(score), 4),
            "result": schema.result(list(proposals)) if schema else []}


class LabelConfigError(InputError):
    """The project's labelling config cannot be used; the message says what and where."""


@dataclass(frozen=True)
class Control:
    name: str
    kind: str  # "taxonomy" | "choices"
    to_name: str
    text_key: str  # the task data field of the object it labels ($text -> "text")
    single: bool  # one choice only (Choices without choice="multiple")
    text_is_url: bool = False  # the object says valueType="url": its data field holds a URL to the text


@dataclass
class LabelStudioSchema:
    controls: dict[str, Control]
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)  # code -> keys from the root
    names: dict[str, str] = field(default_factory=dict)  # code -> the choice's display value
    control_of: dict[str, str] = field(default_factory=dict)  # code -> control name

    @property
    def text_keys(self) -> set[str]:
        return {c.text_key for c in self.controls.values()}

    @property
    def text_key(self) -> str:
        """The task data field read as the text (the first, where controls label several)."""
        return sorted(self.text_keys)[0]

    @property
    def text_is_url(self) -> bool:
        """The text field holds a URL to fetch (`<Text value="$field" valueType="url"/>`), not the text."""
        return any(c.text_is_url for c in self.controls.values() if c.text_key == self.text_key)

    def taxonomy(self) -> Taxonomy:
        nodes = {}
        for code, path in self.paths.items():
            control = self.control_of[code]
            parent = node_code(control, path[:-1]) if len(path) > 1 else None
            nodes[code] = Node(code=code, name=self.names[code], parent=parent, level=len(path), facet=control,
                               path=path)
        return Taxonomy(nodes, frozenset(name for name in self.control_of.values() if self.controls[name].single))

    def codes_of(self, result: list[dict], unknown: list[str]) -> set[str]:
        """The codes of an annotation's result (other controls' results are ignored; unknown choices reported)."""
        codes: set[str] = set()
        for item in result if isinstance(result, list) else []:
            control = item.get("from_name") if isinstance(item, dict) else None
            if not isinstance(control, str) or control not in self.controls:
                continue
            raw_value = item.get("value")
            value = raw_value if isinstance(raw_value, dict) else {}
            paths, unreadable = _paths(value, self.controls[control].kind == "taxonomy")
            if unreadable:
                unknown.append(f"{control}: {unreadable} value(s) of an unreadable shape")
            for path in paths:
                code = node_code(control, path)
                if code in self.paths:
                    codes.add(code)
                else:
                    unknown.append(f"{control}: {' / '.join(path)}")
        return codes

    def result(self, proposals: Iterable[Proposal]) -> list[dict]:
        """Label Studio result items for the proposals: one per control. A taxonomy result lists the deepest
        proposed paths (a path implies its ancestors); a single-choice control keeps the most confident choice."""
        by_control: dict[str, list[Proposal]] = {}
        for p in proposals:
            if p.code in self.paths:
                by_control.setdefault(self.control_of[p.code], []).append(p)
        out = []
        for name, props in by_control.items():
            control = self.controls[name]
            props = sorted(props, key=lambda p: (-p.confidence, p.code))
            value: dict[str, list[list[str]]] | dict[str, list[str]]
            if control.kind == "taxonomy":
                chosen = {self.paths[p.code] for p in props}
                leaves = sorted(p for p in chosen if not any(q != p and q[:len(p)] == p for q in chosen))
                value = {"taxonomy": [list(p) for p in leaves]}
            else:
                keys = [self.paths[p.code][0] for p in props]
                value = {"choices": keys[:1] if control.single else keys}
            out.append({"from_name": name, "to_name": control.to_name, "type": control.kind, "value": value})
        return out


def _paths(value: dict, taxonomy: bool) -> tuple[list[tuple[str, ...]], int]:
    """The choice paths of a result's value (a <Taxonomy>'s lists of names, a <Choices>' names), and how many of
    its entries are of another shape."""
    raw = value.get("taxonomy" if taxonomy else "choices") or []
    entries = raw if isinstance(raw, list) else [raw]
    if taxonomy:
        paths = [tuple(p) for p in entries if isinstance(p, list) and p and all(isinstance(c, str) for c in p)]
    else:
        paths = [(p,) for p in entries if isinstance(p, str)]
    return paths, len(entries) - len(paths)


def parse_label_config(xml: str) -> LabelStudioSchema:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"the labelling config is not valid XML ({exc})") from None
    objects = {el.get("name"): (el.get("value") or "").lstrip("$") for el in root.iter()
               if el.get("name") and (el.get("value") or "").startswith("$")}
    url_objects = {el.get("name") for el in root.iter() if el.get("name") and (el.get("value") or "").startswith("$")
                   and (el.get("valueType") or "").lower() == "url"}
    schema = LabelStudioSchema(controls={})
    for el in root.iter():
        if el.tag not in ("Taxonomy", "Choices"):
            continue
        name, to_name = el.get("name"), el.get("toName")
        if not name or not to_name:
            raise LabelConfigError(f"a <{el.tag}> needs name and toName attributes")
        if to_name not in objects:
            raise LabelConfigError(f"<{el.tag} name={name!r}> labels {to_name!r}, which is not a data object")
        kind = "taxonomy" if el.tag == "Taxonomy" else "choices"
        single = kind == "choices" and el.get("choice", "single") != "multiple"
        schema.controls[name] = Control(name, kind, to_name, objects[to_name], single, to_name in url_objects)

        _add_choices(schema, el, name, kind, el, ())
    if not schema.controls:
        raise LabelConfigError("the labelling config has no <Taxonomy> or <Choices> control to pre-annotate")
    return schema


def _add_choices(schema: LabelStudioSchema, control: ET.Element, name: str, kind: str, parent: ET.Element,
                 path: tuple[str, ...]) -> None:
    # Taxonomy choices nest; Choices may wrap theirs in layout tags, all of them flat.
    for choice in parent.findall("Choice") if kind == "taxonomy" else parent.iter("Choice"):
        value = choice.get("value")
        if value is None:
            raise LabelConfigError(f"<{control.tag} name={name!r}>: a <Choice> without a value")
        key_path = path + (choice.get("alias") or value,)
        code = node_code(name, key_path)
        if code in schema.paths:
            raise LabelConfigError(f"<{control.tag} name={name!r}>: two choices with the key path"
                                   f" {' / '.join(key_path)}")
        schema.paths[code], schema.names[code], schema.control_of[code] = key_path, value, name
        if kind == "taxonomy":
            _add_choices(schema, control, name, kind, choice, key_path)
