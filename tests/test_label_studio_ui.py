"""What a labeller meets in Label Studio's editor (headless Chromium, Debian's, driven by Selenium): the service's
pre-annotations pre-selected in each facet's control under the facet's name, and the version tab."""

from __future__ import annotations

import uuid

import pytest

from automl.taxonomy_file import load_taxonomy
from browser import chrome, wait_for_text  # noqa: F401 - the module fixture
from conftest import EXAMPLE, ROOT, example_rows, write_assets
from connectors.files import load_assets
from connectors.label_studio_client import LabelStudioClient
from connectors.label_studio_setup import init_project
from label_studio_server import label_studio  # noqa: F401 - the session fixture
from service.app.factory import build_worker
from service.config import Secrets, load_settings

FACETS = {"population": ["BE"]}
pytestmark = pytest.mark.slow  # a real Label Studio and a real browser


def test_a_labeller_sees_the_pre_annotations_under_each_facets_name(label_studio, chrome, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    tax = load_taxonomy(EXAMPLE / "taxonomy.csv", FACETS)
    # No label yet: the keyword rules pre-fill (what a labeller meets on day one).
    write_assets(tmp_path / "a.csv", [(i, t, "") for i, t, _ in example_rows("test.csv", 40)])
    client = LabelStudioClient(label_studio.url, label_studio.token)
    project = init_project(client, f"ui-{uuid.uuid4().hex[:8]}", tax, assets=load_assets(tmp_path / "a.csv", tax),
                           say=lambda _: None).project_id
    settings = load_settings(None, {"platform": "label-studio", "state_dir": str(tmp_path / "state"),
                                    "label_studio": {"project_id": project, "url": label_studio.url},
                                    "taxonomy": {"path": str(EXAMPLE / "taxonomy.csv"), "facet_roots": FACETS},
                                    "model": {"min_examples": 100000}})
    assert build_worker(settings, Secrets(label_studio_api_key=label_studio.token)).run_once().written == 40
    # The task whose prediction fills both facets most.
    predictions = [p for p in label_studio.client.predictions(project) if p["model_version"] == "v1"]
    best = max(predictions, key=lambda p: (len({r["from_name"] for r in p["result"]}), len(str(p["result"]))))
    names = {tax.nodes[path[-1]].name for r in best["result"] for path in r["value"]["taxonomy"]}
    assert {r["from_name"] for r in best["result"]} == {"subject", "population"}, best["result"]

    chrome.get(f"{label_studio.url}/user/login/")
    chrome.find_element(By.NAME, "email").send_keys(label_studio.username)
    chrome.find_element(By.NAME, "password").send_keys(label_studio.password)
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for_text(chrome, ["Projects"], 30)
    chrome.get(f"{label_studio.url}/projects/{project}/data?task={best['task']}")
    body = wait_for_text(chrome, ["Subject", "Population", "v1", *names])
    artefacts = ROOT / "test-artifacts"  # kept after the run (ignored by git); docs/ has the README's copy
    artefacts.mkdir(exist_ok=True)
    shot = artefacts / "label-studio-editor.png"
    chrome.save_screenshot(str(shot))
    assert "Subject" in body and "Population" in body, body[:2000]
    assert "v1" in body, body[:2000]  # the prediction's version tab
    missing = sorted(n for n in names if n not in body)
    assert not missing, f"pre-selected choices not shown: {missing}; screenshot {shot}"
