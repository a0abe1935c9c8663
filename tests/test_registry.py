from __future__ import annotations

import pytest

from automl.model import PreAnnotator
from automl.settings import ModelSettings
from automl.taxonomy_file import load_taxonomy
from service.store.registry import ModelRegistry, RegistryError


@pytest.fixture
def keyword_model(small_taxonomy):
    # No labelled text: a keyword-only model, trained in milliseconds, still a full PreAnnotator.
    return PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings()).fit([], [])


def test_register_load_and_promote(tmp_path, keyword_model):
    registry = ModelRegistry(tmp_path / "models")
    assert registry.current() is None and registry.versions() == []
    v1 = registry.register(keyword_model, "fp1", {"budget_seconds": 1})
    v2 = registry.register(keyword_model, "fp2", {"budget_seconds": 1})
    assert (v1.number, v2.number) == (1, 2) and v2.name == "v2"
    assert registry.current().fingerprint == "fp2"
    fresh = ModelRegistry(tmp_path / "models")  # a new process: loads from disk, no retraining
    loaded = fresh.load(fresh.current())
    assert loaded.predict(["our cats and dogs"])[0]["subject"][0].source == "keyword"
    assert {m.facet for m in fresh.current().metrics} == {"subject"}
    fresh.promote(1)
    assert ModelRegistry(tmp_path / "models").current().fingerprint == "fp1"
    assert [v.number for v in fresh.versions()] == [1, 2]


def test_no_half_written_version_is_visible(tmp_path, keyword_model, monkeypatch):
    registry = ModelRegistry(tmp_path / "models")
    registry.register(keyword_model, "fp1", {})
    import joblib

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(joblib, "dump", broken_dump)
    with pytest.raises(OSError):
        registry.register(keyword_model, "fp2", {})
    assert [v.number for v in registry.versions()] == [1]
    assert registry.current().number == 1
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".staging")]


def test_missing_current_version_is_a_clear_error(tmp_path, keyword_model):
    registry = ModelRegistry(tmp_path / "models")
    registry.register(keyword_model, "fp1", {})
    (tmp_path / "models" / "CURRENT").write_text("7\n")
    with pytest.raises(RegistryError, match="version 7, which is missing"):
        registry.current()
    with pytest.raises(RegistryError, match="no model version 9"):
        registry.promote(9)


def test_damaged_metadata_and_pointer_are_explained_and_the_previous_good_version_serves(tmp_path, keyword_model,
                                                                                         caplog):
    registry = ModelRegistry(tmp_path / "models")
    for n in (1, 2):
        registry.register(keyword_model, f"fp{n}", {})
    (tmp_path / "models" / "v0002" / "meta.json").write_text('{"number": 2, "created_', encoding="utf-8")  # cut
    fresh = ModelRegistry(tmp_path / "models")
    assert [v.number for v in fresh.versions()] == [1]  # left out, with a warning naming the file
    assert fresh.current().number == 1  # CURRENT names 2: the newest good version before it serves
    assert "v0002/meta.json is damaged" in caplog.text and "serving v1" in caplog.text
    assert fresh.register(keyword_model, "fp3", {}).number == 3  # the damaged folder's number is not reused
    (tmp_path / "models" / "CURRENT").write_text("garbage\n")
    with pytest.raises(RegistryError, match="holds 'garbage', not a version number. Fix: `classie-automl models"
                                            " --promote N` with one of the versions"):
        ModelRegistry(tmp_path / "models").current()
    (tmp_path / "models" / "CURRENT").write_text("1\n")
    (tmp_path / "models" / "v0001" / "meta.json").write_bytes(b"\xff\xfe garbage")
    (tmp_path / "models" / "CURRENT").write_text("2\n")
    with pytest.raises(RegistryError, match="is damaged and there is no earlier good version. Fix: delete"):
        ModelRegistry(tmp_path / "models").current()
