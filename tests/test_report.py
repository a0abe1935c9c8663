"""The evaluation report: what its analyses find on hand-made decisions, what the page holds, and how it looks in a
real headless browser (every image loads, no console error, tables sort)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from automl.decisions import Decisions
from automl.diagnostics import confident_mistakes, hierarchy_confusions, reliability
from automl.model import PreAnnotator
from automl.settings import ModelSettings
from automl.taxonomy_file import load_taxonomy
from browser import chrome  # noqa: F401 - the module fixture
from conftest import EXAMPLE, ROOT, example_rows
from connectors.base import Asset
from service.quality.report import HeldOutFit, write_report
from service.store.registry import ModelRegistry

TREE = """code,name,parent_code
A,A,
A1,A one,A
A2,A two,A
B,B,
B1,B one,B
A11,A one one,A1
A21,A two one,A2
"""


def test_siblings_cousins_wrong_branches_calibration_and_confident_mistakes(tmp_path):
    (tmp_path / "t.csv").write_text(TREE, encoding="utf-8")
    taxonomy = load_taxonomy(tmp_path / "t.csv")
    codes = ["A", "A1", "A2", "B", "B1", "A11", "A21"]
    # Row 0: A2 proposed instead of A1 (siblings). Row 1: B1 proposed under B, which the gold lacks (wrong branch).
    # Row 2: A21 instead of A11 (cousins: one grandparent), under A2, which the gold lacks (wrong branch too).
    chosen = np.array([[1, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 1]], dtype=bool)
    truth = np.array([[1, 1, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 1, 0]], dtype=bool)
    confidence = np.where(chosen, np.array([[0.9, 0, 0.8, 0, 0, 0, 0], [0, 0, 0, 0.55, 0.6, 0, 0],
                                            [0.95, 0.7, 0, 0, 0, 0, 0.5]]), 0.0)
    d = Decisions(codes, chosen, confidence, np.zeros_like(chosen, dtype=np.int8), confidence)
    pairs, branches, wrong = hierarchy_confusions(taxonomy, d, truth)
    assert wrong == 4
    assert sorted((p.proposed, p.instead_of, p.relation) for p in pairs) == [
        ("A2", "A1", "sibling"), ("A21", "A11", "cousin"), ("B", "A", "sibling")]  # B1 and A2: other branches
    assert sorted((b.code, b.parent, b.count) for b in branches) == [("A21", "A2", 1), ("B1", "B", 1)]

    bins = reliability(d, truth)
    assert sum(b.count for b in bins) == chosen.sum()
    top = next(b for b in bins if b.low == pytest.approx(0.9))
    assert (top.count, top.accuracy) == (2, 1.0)  # 0.9 and 0.95, both right

    mistakes = confident_mistakes(["A1", "A2"], d, truth, ["r0", "r1", "r2"], ["text zero", "text one", "two"])
    assert [(m.asset_id, m.code, m.gold) for m in mistakes] == [("r0", "A2", ["A1"])]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of a keyword-rules version of UK-CAT (no search: seconds) on 300 test charities."""
    tmp = tmp_path_factory.mktemp("report")
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", facet_roots={"population": ["BE"]})
    rows = example_rows("train.csv", 400)
    model = PreAnnotator(taxonomy, ModelSettings(min_examples=100000)).fit(
        [t for _, t, _ in rows], [{c for c in ls.split(";") if c in taxonomy} for _, _, ls in rows])
    registry = ModelRegistry(tmp / "models")
    registry.register(model, "fp1", {})
    version = registry.register(model, "fp2", {}, promote=False, gate={"promoted": False, "reason": "worse than v1"})
    test = [Asset(i, t, frozenset(c for c in ls.split(";") if c in taxonomy), "")
            for i, t, ls in example_rows("test.csv", 300)]
    path = write_report(registry, version, HeldOutFit(model, test, "300 test charities"))
    return path


def test_the_report_is_one_self_contained_page_with_every_section(report):
    page = report.read_text(encoding="utf-8")
    assert report.name == "report.html" and report.parent.name == "v0002"
    for heading in ("Model v2", "rejected", "What it saves a labeller", "Quality per facet and level",
                    "Facet subject", "Facet population", "Are the confidences right?",
                    "Confusions that matter in the hierarchy", "subject level 3", "most confident wrong pre-fills",
                    "Across versions", "REJECTED: worse than v1", "v1: "):
        assert heading in page, heading
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 10
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert len(page.encode()) < 3_000_000


@pytest.mark.slow
def test_the_report_in_a_real_browser(report, chrome):  # noqa: F811
    from selenium.webdriver.common.by import By

    chrome.get(report.as_uri())
    images = chrome.find_elements(By.TAG_NAME, "img")
    assert images and all(chrome.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                          for i in images)
    assert [e for e in chrome.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
    table = max(chrome.find_elements(By.CSS_SELECTOR, "details table.sortable"),
                key=lambda t: len(t.find_elements(By.CSS_SELECTOR, "tbody tr")))
    chrome.execute_script("arguments[0].closest('details').open = true", table)
    header = table.find_elements(By.TAG_NAME, "th")[6]  # F1
    header.click()
    values = [float(r.find_elements(By.TAG_NAME, "td")[6].text)
              for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert values == sorted(values, reverse=True) and len(values) > 3
    assert [e for e in chrome.get_log("browser") if e["level"] == "SEVERE"] == []
    chrome.set_window_size(1280, 1500)
    artefacts = ROOT / "test-artifacts"  # kept after the run (ignored by git); docs/ has the README's copy
    artefacts.mkdir(exist_ok=True)
    chrome.execute_script("window.scrollTo(0, 0)")
    chrome.save_screenshot(str(artefacts / "report-top.png"))
