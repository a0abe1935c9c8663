"""The reference pages generated from the code at each build: the command line, the settings, the HTTP API, the
metrics, the exit codes and the code's layout (`PAGES`), and the fragments the hand-made file-formats page shows
(`file_formats.FRAGMENTS`). Nothing generated is committed: docs/_ext/reference.py writes the pages before Sphinx
reads its sources (the pages' names are in .gitignore)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reference_pages import cli, exit_codes, http_api, layout, metrics, settings

__all__ = ["PAGES", "write_pages"]

# docs/reference/<name>.md -> what makes it (docs/index.md's toctree names them)
PAGES: dict[str, Callable[[], str]] = {"cli": cli.page, "settings": settings.page, "http-api": http_api.page,
                                       "metrics": metrics.page, "exit-codes": exit_codes.page, "layout": layout.page}


def write_pages(folder: Path, names: tuple[str, ...] = tuple(PAGES)) -> list[Path]:
    """Writes each page of `names` into `folder` as <name>.md; a page whose text did not change is left alone (its
    time too, so that Sphinx reads it again only when the code changed it). Returns the pages written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = folder / f"{name}.md"
        text = PAGES[name]()
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written
