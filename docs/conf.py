"""The documentation site: Sphinx with MyST (Markdown pages) and the Furo theme.

`./dev docs` builds it into site/ with warnings as errors and every internal link and anchor checked (as .ci/run does).
The reference pages are generated from the code at each build by the `reference` extension (docs/_ext/reference.py).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent / "_ext")]

import tomllib  # noqa: E402

project = "classie-automl"
release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
version = release
copyright = "2026, the classie-automl authors; UK-CAT data CC BY 4.0"

extensions = ["myst_parser", "reference"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext", "*.csv"]
myst_enable_extensions = ["colon_fence", "deflist", "attrs_block", "attrs_inline"]
myst_heading_anchors = 3  # `[x](page.md#a-heading)` links are checked against the page's headings
nitpicky = True
suppress_warnings: list[str] = []

html_theme = "furo"
html_title = f"classie-automl {release}"
html_static_path: list[str] = []
