"""The `reference` Sphinx extension: the reference pages generated from the code at each build, so they cannot
drift from it.

When the builder starts, before Sphinx reads its sources, it writes docs/reference/<page>.md for each generated page
(reference_pages.PAGES; the files are ignored by git, never committed). A hand-made page shows a part that the code
declares as data with the `classie-generated` directive:

    ```{classie-generated} taxonomy-columns
    ```

whose Markdown (reference_pages.file_formats.FRAGMENTS) is made at the build and parsed in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from reference_pages import write_pages
from reference_pages.file_formats import FRAGMENTS
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

__all__ = ["GeneratedFragment", "setup"]

log = logging.getLogger(__name__)
FOLDER = "reference"  # under the documentation's source folder
DIRECTIVE = "classie-generated"


class GeneratedFragment(SphinxDirective):
    """```{classie-generated} NAME```: the fragment NAME, made from the code now, parsed as Markdown here."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in FRAGMENTS:
            raise self.error(f"classie-generated: no fragment {name!r}. Fix: use one of {', '.join(FRAGMENTS)}"
                             " (docs/_ext/reference_pages/file_formats.py).")
        container = nodes.container()
        self.state.nested_parse(StringList(FRAGMENTS[name]().splitlines(), source=f"<generated {name}>"),
                                self.content_offset, container)
        return list(container.children)


def _generate(app: Sphinx) -> None:
    written = write_pages(Path(app.srcdir) / FOLDER)
    log.info("reference: %d generated page(s) changed", len(written))


def _with_fragments(app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str],
                    removed: set[str]) -> list[str]:
    """The pages that place a fragment are read again at every build: the code may have changed it."""
    return [name for name in env.found_docs
            if f"{{{DIRECTIVE}}}" in Path(env.doc2path(name)).read_text(encoding="utf-8")]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _generate)
    app.connect("env-get-outdated", _with_fragments)
    app.add_directive(DIRECTIVE, GeneratedFragment)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
