"""Each platform's settings, declared once: the `[files]`, `[kili]` and `[label_studio]` sections of the service's
configuration, passed to the connectors as they are. Secrets are not settings: they come from the environment only
(see `service.config.Secrets`)."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from automl.settings import Section


class FilesSettings(Section):
    assets: Path | None = None  # .csv (or .tsv) with a header, or .jsonl (one object per line)
    output: Path | None = None  # default: <state_dir>/preannotations.jsonl
    id_column: str = "id"
    text_column: str = "text"
    labels_column: str = "labels"  # most specific codes; ancestors are implied
    label_separator: str = Field(";", min_length=1)  # in CSV; JSONL may also give a list
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, utf-8-sig, latin-1, cp1252)") from None
        return value


class KiliSettings(Section):
    project_id: str | None = None
    endpoint: str | None = None  # default: KILI_API_ENDPOINT, then Kili's cloud
    model_name_prefix: str = "classie-automl"  # predictions are named <prefix>-v<N>
    push_batch: int = Field(100, ge=1, le=1000)


class LabelStudioSettings(Section):
    url: str | None = None  # default: LABEL_STUDIO_URL
    project_id: int | None = None
    earlier_versions: Literal["keep", "remove"] = "keep"  # predictions of earlier versions on re-predicted tasks
    push_batch: int = Field(500, ge=1, le=5000)
