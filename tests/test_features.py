from __future__ import annotations

import numpy as np
import pytest

from automl.features import TextFeatures
from automl.settings import ModelSettings
from automl.taxonomy_file import load_taxonomy

TEXTS = [
    "support for disabled people and their carers",
    "a home for rescued cats and kittens",
    "after school clubs for children with disabilities",
    "dog rescue and rehoming of dogs",
    "mental health support groups in the community",
    "primary school parents association",
]


def fitted(small_taxonomy, **settings) -> TextFeatures:
    return TextFeatures(load_taxonomy(small_taxonomy), ModelSettings(min_df=1, max_df=1.0, **settings)).fit(TEXTS)


def test_columns_are_words_then_character_ngrams_then_keyword_hits(small_taxonomy):
    features = fitted(small_taxonomy)
    X, hits = features.transform(TEXTS)
    n_codes = len(features.matcher_.codes)
    assert features.n_char_terms > features.n_terms > 0
    assert X.shape == (len(TEXTS), features.n_terms + features.n_char_terms + n_codes)
    assert X.dtype == np.float32
    # Each row has unit length as a whole, so no block outweighs the others by its length alone.
    assert np.allclose(np.sqrt(X.multiply(X).sum(axis=1)).A1, 1.0, atol=1e-5)
    # The hit columns are the keyword hits (scaled with their row).
    assert ((X[:, -n_codes:].toarray() > 0) == hits).all()
    # Word columns are the similarity vectors, up to the row's scale.
    words = features.vectors(TEXTS).toarray()
    block = X[:, :features.n_terms].toarray()
    assert np.allclose(block / np.linalg.norm(block, axis=1, keepdims=True), words, atol=1e-5)


def test_character_ngrams_link_a_words_forms_that_the_word_vocabulary_keeps_apart(small_taxonomy):
    features = fitted(small_taxonomy)
    X, _ = features.transform(["disabled", "disabilities", "kittens"])
    chars = X[:, features.n_terms:features.n_terms + features.n_char_terms].toarray()
    chars /= np.linalg.norm(chars, axis=1, keepdims=True)
    words = features.vectors(["disabled", "disabilities", "kittens"]).toarray()
    assert words[0] @ words[1] == 0  # no word in common
    assert chars[0] @ chars[1] > 0.2 > 0.05 > chars[0] @ chars[2]


def test_character_ngrams_are_scikit_learns_char_wb_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from automl.features import CHAR_MAX_DF, CharNgrams

    fitted_on = TEXTS * 2 + ["Ünïcode  and\ttabs,\nnew lines; punctuation!", "x"]
    texts = fitted_on + ["unseen words: disabling, catlike", "", "   "]
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), max_df=CHAR_MAX_DF, min_df=2,
                                sublinear_tf=True, dtype=np.float32).fit(fitted_on)
    ours = CharNgrams(4, min_df=2).fit(fitted_on)
    assert ours.vocabulary_ == reference.vocabulary_
    assert abs(ours.transform(texts) - reference.transform(texts)).max() < 1e-6


def test_character_ngrams_keep_the_same_most_frequent_ones_as_scikit_learn_at_the_cap(monkeypatch):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from automl import features

    monkeypatch.setattr(features, "CHAR_MAX_FEATURES", 40)
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), max_df=features.CHAR_MAX_DF, min_df=1,
                                max_features=40, sublinear_tf=True, dtype=np.float32).fit(TEXTS)
    ours = features.CharNgrams(5, min_df=1).fit(TEXTS)
    assert len(ours.vocabulary_) == 40 and ours.vocabulary_ == reference.vocabulary_
    assert abs(ours.transform(TEXTS) - reference.transform(TEXTS)).max() < 1e-6
    with pytest.raises(ValueError):  # as scikit-learn: no text has a word
        features.CharNgrams(5, min_df=1).fit(["", "   "])


def test_featurise_gives_the_vectors_of_the_same_pass(small_taxonomy):
    features = fitted(small_taxonomy)
    X, hits, vectors = features.featurise(TEXTS)
    X2, hits2 = features.transform(TEXTS)
    assert (X != X2).nnz == 0 and (hits == hits2).all()
    assert (vectors != features.vectors(TEXTS)).nnz == 0


@pytest.mark.parametrize("char_ngram_max", [0, 1])
def test_words_only_when_character_ngrams_are_off(small_taxonomy, char_ngram_max):
    features = fitted(small_taxonomy, char_ngram_max=char_ngram_max)
    X, hits = features.transform(TEXTS)
    assert features.n_char_terms == 0
    assert X.shape[1] == features.n_terms + hits.shape[1]
    assert (X[:, :features.n_terms] != features.vectors(TEXTS)).nnz == 0  # unscaled, as before


def test_a_model_saved_before_character_ngrams_transforms_as_it_did(small_taxonomy):
    features = fitted(small_taxonomy, char_ngram_max=0)
    del features.char_vectorizer_  # what a pickle of the earlier TextFeatures holds
    X, hits = features.transform(TEXTS)
    assert X.shape[1] == features.n_terms + hits.shape[1] and features.n_char_terms == 0


def test_texts_without_usable_words_give_keyword_hits_only(small_taxonomy):
    features = TextFeatures(load_taxonomy(small_taxonomy), ModelSettings()).fit(["a", "b"])
    X, hits = features.transform(["cats", "school"])
    assert features.vectorizer_ is None and features.char_vectorizer_ is None
    assert X.shape == hits.shape and features.vectors(["x"]).shape == (1, 0)


def test_keyword_rules_alone_fit_no_character_ngrams(small_taxonomy):
    from automl.model import PreAnnotator

    texts = TEXTS * 5
    labels = [{"HE"}, {"AN1"}, {"ED"}, {"AN2"}, {"HE1"}, {"ED"}] * 5
    rules_only = PreAnnotator(load_taxonomy(small_taxonomy), ModelSettings(min_examples=1000)).fit(texts, labels)
    assert rules_only.features_.n_char_terms == 0 and rules_only.features_.n_terms > 0
    assert len(rules_only.propose(["a home for cats"])) == 1
    assert TextFeatures(load_taxonomy(small_taxonomy), ModelSettings(min_df=1)).fit(TEXTS).n_char_terms > 0
