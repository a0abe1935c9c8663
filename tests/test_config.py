from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ConfigError, load_settings
from conftest import write


def test_file_then_environment_then_flags(tmp_path, monkeypatch):
    config = write(tmp_path / "c.toml", '[files]\nassets = "data/a.csv"\n[model]\nbudget_seconds = 50\nseed = 3\n')
    monkeypatch.setenv("CLASSIE_MODEL__BUDGET_SECONDS", "70")
    monkeypatch.setenv("CLASSIE_MODEL__MIN_EXAMPLES", "4")
    s = load_settings(config, {"model": {"seed": 9}})
    assert s.files.assets == tmp_path / "data" / "a.csv"  # relative to the config file
    assert (s.model.budget_seconds, s.model.min_examples, s.model.seed) == (70, 4, 9)
    assert s.output_path == Path("state") / "preannotations.jsonl"


@pytest.mark.parametrize("text, expected", [
    ("[model]\nbudget_seconds = 'soon'\n", "model.budget_seconds"),
    ("[model]\nbudgett = 5\n", "model.budgett: Extra inputs are not permitted"),
    ("[model\n", "not valid TOML"),
])
def test_bad_config_names_the_setting(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_settings(write(tmp_path / "c.toml", text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.toml")
