"""Headless Chromium (Debian's) driven by Selenium, for the tests of what people see: installed by
scripts/install-browser.sh when missing, else the tests that need it are skipped with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def chrome(tmp_path_factory):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        done = subprocess.run(["bash", str(ROOT / "scripts" / "install-browser.sh")], capture_output=True,
                              text=True, timeout=900)
        if done.returncode:
            pytest.skip(f"no Chromium to drive: scripts/install-browser.sh said {done.stderr.strip()[-500:]}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download anything
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages, for the tests to read
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for_text(driver, texts, seconds=60) -> str:
    """The page's text once it holds all of `texts` (or when `seconds` have passed). A page that is navigating
    replaces its body under the reader: that read is simply tried again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + seconds
    body = ""
    while True:
        try:
            body = driver.find_element(By.TAG_NAME, "body").text
        except (StaleElementReferenceException, NoSuchElementException):
            body = ""
        if (body and all(t in body for t in texts)) or time.monotonic() > deadline:
            return body
        time.sleep(0.5)
