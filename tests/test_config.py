from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write
from service.config import ConfigError, load_settings


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


def test_learning_settings_are_marked_on_the_field_and_all_reach_the_fingerprint():
    from automl.settings import ModelSettings, learning

    default = ModelSettings().learning_fingerprint()
    assert set(default) == {"min_examples", "max_chars", "max_df", "min_df", "ngram_max", "char_ngram_max", "hierarchy",
                            "detect_single_choice",
                            "wrong_prefill_cost", "holdout_fraction", "refit_promoted"}
    assert ModelSettings(suggestion_min_confidence=0.5).learning_fingerprint() == default  # what is shown only
    assert ModelSettings(promote_tolerance=0.1).learning_fingerprint() == default  # which version serves only
    assert ModelSettings(target_precision=0.7).learning_fingerprint() == {**default, "target_precision": 0.7}
    assert ModelSettings(budget_seconds=5, seed=2).learning_fingerprint() == default  # how long, not what

    class WithNewSetting(ModelSettings):  # a learning setting added later is seen without any other change
        stopwords: str = learning("none")
        verbose: bool = False

    assert WithNewSetting().learning_fingerprint() == {**default, "stopwords": "none"}
    assert WithNewSetting(stopwords="english").learning_fingerprint() != WithNewSetting().learning_fingerprint()
    assert WithNewSetting(verbose=True).learning_fingerprint() == WithNewSetting().learning_fingerprint()


def test_flags_and_the_platform_variables_find_their_settings(monkeypatch):
    from service.config import flag_overrides

    monkeypatch.setenv("LABEL_STUDIO_URL", "http://ls:8080")
    monkeypatch.setenv("KILI_API_ENDPOINT", "http://kili/graphql")
    s = load_settings(None, flag_overrides(platform="label-studio", budget=40, state=Path("st"), assets=None),
                      project_id="7")
    assert (s.platform, s.model.budget_seconds, s.state_dir, s.files.assets) == ("label-studio", 40, Path("st"), None)
    assert (s.label_studio.project_id, s.label_studio.url) == (7, "http://ls:8080")
    assert s.kili.endpoint == "http://kili/graphql"
    assert load_settings(None, flag_overrides(url="http://other")).label_studio.url == "http://other"  # a flag wins
    assert load_settings(None, {"platform": "kili"}, project_id="p9").kili.project_id == "p9"
    with pytest.raises(ConfigError, match="Label Studio project ids are numbers"):
        load_settings(None, {"platform": "label-studio"}, project_id="abc")
