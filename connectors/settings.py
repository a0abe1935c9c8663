"""Each platform's settings, declared once: the `[files]`, `[kili]`, `[label_studio]` and `[security]` sections of
the service's configuration, passed to the connectors as they are. Secrets are not settings: they come from the
environment only (see `service.config.Secrets`)."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from automl.settings import Section

__all__ = ["FilesSettings", "KiliSettings", "LabelStudioSettings", "SecuritySettings", "host_entry"]


class FilesSettings(Section):
    assets: Path | None = None  # .csv (or .tsv) with a header, or .jsonl (one object per line)
    output: Path | None = None  # default: <state_dir>/preannotations.jsonl
    id_column: str = "id"  # the column (or JSON key) holding each asset's unique id
    text_column: str = "text"  # the column (or JSON key) holding the text
    labels_column: str = "labels"  # most specific codes; ancestors are implied
    label_separator: str = Field(";", min_length=1)  # in CSV; JSONL may also give a list
    encoding: str = "utf-8"  # of the assets file (a Python codec name)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, utf-8-sig, latin-1, cp1252)") from None
        return value


class KiliSettings(Section):
    project_id: str | None = None  # the Kili project (required with platform kili)
    endpoint: str | None = None  # default: KILI_API_ENDPOINT, then Kili's cloud
    model_name_prefix: str = "classie-automl"  # predictions are named <prefix>-v<N>
    push_batch: int = Field(100, ge=1, le=1000)  # predictions sent per Kili call


class LabelStudioSettings(Section):
    url: str | None = None  # default: LABEL_STUDIO_URL
    project_id: int | None = None  # else the state folder's record, else Label Studio's /setup call
    earlier_versions: Literal["keep", "remove"] = "keep"  # predictions of earlier versions on re-predicted tasks
    push_batch: int = Field(500, ge=1, le=5000)  # predictions sent per import call


class SecuritySettings(Section):
    """How texts given as URLs (a Kili asset's content, a Label Studio text with valueType="url") are fetched: only
    over http(s), from the platform's own address or the hosts listed here, with a size cap and a time limit."""

    # "host" (any port), "host:port", "[v6 address]:port", or "*.example.com" (its subdomains, which must resolve to
    # public addresses). A host listed here is trusted even on a private or loopback address.
    allowed_content_hosts: tuple[str, ...] = ()
    max_content_bytes: int = Field(1_048_576, ge=1)  # a longer text is skipped (texts are cut at 3,000 chars anyway)
    content_timeout_seconds: float = Field(30.0, gt=0)  # for the whole answer, redirects included

    @field_validator("allowed_content_hosts")
    @classmethod
    def _hosts_not_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hosts = tuple(v.strip().lower() for v in value)
        for host in hosts:
            host_entry(host)
        return hosts


def host_entry(entry: str) -> tuple[str, int | None]:
    """An `allowed_content_hosts` entry as (host, port or None for any port); IPv6 addresses without brackets."""
    host, port = entry, None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (None if not rest else "?")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    bad_port = port is not None and not (port.isdigit() and 0 < int(port) < 65536)
    problem = ("no host" if not host.strip("*.") else "a scheme or path" if "/" in entry or "@" in entry
               else "a port that is not a number from 1 to 65535" if bad_port
               else "a wildcard not at the start" if "*" in host and not (host.startswith("*.") and "*" not in host[1:])
               else None)
    if problem:
        raise ValueError(f"allowed_content_hosts entry {entry!r} has {problem}: give a name or address, e.g."
                         ' "files.example.com", "10.0.0.5:8080", "[::1]:8080" or "*.example.com"')
    return host, int(port) if port is not None else None
