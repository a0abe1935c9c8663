"""Text featurisation: word and character TF-IDF over the cut, unprocessed text, plus one column per keyword rule
hit, each row scaled to unit length as a whole."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.preprocessing import normalize

from automl.keywords import KeywordMatcher
from automl.settings import ModelSettings
from automl.taxonomy import Taxonomy

__all__ = ["CHAR_MAX_DF", "CHAR_MAX_FEATURES", "CharNgrams", "TextFeatures"]

log = logging.getLogger(__name__)
# Keyword hits as extra features (at this weight beside the TF-IDF terms) let a model learn when a rule can be trusted.
KEYWORD_FEATURE_WEIGHT = 1.0
# Character n-grams common to more texts than this share say little (every "ing" and "the"); the cap bounds the
# vocabulary, and so the model's size, however many texts are labelled.
CHAR_MAX_DF = 0.5
CHAR_MAX_FEATURES = 200_000


def cut(texts: Sequence[str], max_chars: int) -> list[str]:
    return [t[:max_chars] for t in texts]


def _fitted(texts: list[str], tries: Sequence[dict]) -> TfidfVectorizer | None:
    """The first vectoriser of `tries` that keeps some terms of `texts` (tiny corpora: max_df/min_df can prune every
    term), or None."""
    for options in tries:
        vectorizer = TfidfVectorizer(sublinear_tf=True, dtype=np.float32, **options)
        try:
            return vectorizer.fit(texts)
        except ValueError as exc:
            log.warning("TF-IDF %s kept no terms (%s)", options, exc)
    return None


def _word_columns(texts: Sequence[str], columns_of_word) -> tuple[np.ndarray, np.ndarray]:
    """The column indices of every text's character n-grams (with repeats) and where each text ends: what the
    char_wb analyser does to a text is lower case, split on white space, n-grams of each padded word; each distinct
    word is looked up once (`columns_of_word`, cached per call)."""
    cache: dict[str, list[int]] = {}
    columns: list[int] = []
    ends = [0]
    for text in texts:
        for word in text.lower().split():
            known = cache.get(word)
            if known is None:
                known = cache[word] = columns_of_word(word)
            columns.extend(known)
        ends.append(len(columns))
    return np.asarray(columns, dtype=np.int32), np.asarray(ends, dtype=np.int64)


class _WordCachedCounter(CountVectorizer):
    """scikit-learn's char_wb CountVectorizer whose vocabulary is counted a distinct word at a time (the same
    vocabulary and counts: df pruning and max_features are its own)."""

    def _count_vocab(self, raw_documents, fixed_vocab):
        if fixed_vocab:
            return super()._count_vocab(raw_documents, fixed_vocab)
        analyse = self.build_analyzer()
        vocabulary: dict[str, int] = {}
        columns, ends = _word_columns(raw_documents, lambda w: [vocabulary.setdefault(g, len(vocabulary))
                                                                for g in analyse(w)])
        if not vocabulary:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        counts = sp.csr_matrix((np.ones(len(columns), dtype=self.dtype), columns, ends),
                               shape=(len(ends) - 1, len(vocabulary)))
        counts.sum_duplicates()
        return vocabulary, counts


class CharNgrams:
    """Character n-gram TF-IDF within words (scikit-learn's "char_wb" analyser): the same values as its
    TfidfVectorizer, computed 3-4x faster. A text's n-grams are those of its words, so each distinct word of a
    transform call is analysed once (its columns kept for that call only, so memory does not grow with the pool)."""

    def __init__(self, ngram_max: int, min_df: int):
        self.counter = _WordCachedCounter(analyzer="char_wb", ngram_range=(2, ngram_max), max_df=CHAR_MAX_DF,
                                          min_df=min_df, max_features=CHAR_MAX_FEATURES, dtype=np.float32)
        self.weights = TfidfTransformer(sublinear_tf=True)

    def fit(self, texts: list[str]) -> CharNgrams:
        self.weights.fit(self.counter.fit_transform(texts))
        return self

    @property
    def vocabulary_(self) -> dict[str, int]:
        return self.counter.vocabulary_

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        analyse, vocabulary = self.counter.build_analyzer(), self.vocabulary_
        columns, ends = _word_columns(texts, lambda w: [vocabulary[g] for g in analyse(w) if g in vocabulary])
        counts = sp.csr_matrix((np.ones(len(columns), dtype=np.float32), columns, ends),
                               shape=(len(texts), len(vocabulary)))
        counts.sum_duplicates()
        return self.weights.transform(counts)


class TextFeatures:
    """Fits TF-IDF on training texts; transforms texts into (features, keyword hits of every taxonomy code).

    The features' columns: the word terms first (`n_terms` of them), then the character n-grams, then the keyword
    hits. Each TF-IDF block is L2-normalised by its vectoriser, and the row again as a whole, so that no block
    outweighs the others by its length alone."""

    def __init__(self, taxonomy: Taxonomy, settings: ModelSettings):
        self.taxonomy = taxonomy
        self.settings = settings

    def fit(self, texts: Sequence[str], characters: bool = True) -> TextFeatures:
        """Learn the vocabularies; `characters=False`: no character n-grams, whatever [model] char_ngram_max says."""
        s = self.settings
        texts = cut(texts, s.max_chars)
        self.matcher_ = KeywordMatcher(self.taxonomy, sorted(self.taxonomy.nodes))
        self.code_index_ = {c: i for i, c in enumerate(self.matcher_.codes)}
        # None: no usable text, keyword hits are the only features
        self.vectorizer_ = _fitted(texts, [dict(ngram_range=(1, s.ngram_max), max_df=s.max_df, min_df=s.min_df),
                                           dict(ngram_range=(1, s.ngram_max))])
        self.char_vectorizer_ = None
        if characters and s.char_ngram_max >= 2 and self.vectorizer_ is not None:
            try:
                self.char_vectorizer_ = CharNgrams(s.char_ngram_max, s.min_df).fit(texts)
            except ValueError as exc:  # as with words: pruning can leave none
                log.warning("character n-grams: none kept (%s)", exc)
        return self

    def drop_characters(self, texts: Sequence[str], hits: np.ndarray) -> sp.csr_matrix:
        """From now on the word terms and keyword hits alone (rows as a words-only fit makes them); returns the rows
        of `texts` whose keyword `hits` are known (not matched again)."""
        self.char_vectorizer_ = None
        texts = cut(texts, self.settings.max_chars)
        return self._rows(texts, self._words(texts), hits)

    def transform(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        X, hits, _ = self.featurise(texts)
        return X, hits

    def featurise(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix]:
        """`transform`, and the texts' `vectors` from the same pass."""
        texts = cut(texts, self.settings.max_chars)
        hits = self.matcher_.match(texts)
        words = self._words(texts)
        return self._rows(texts, words, hits), hits, words

    def _rows(self, texts: list[str], words: sp.csr_matrix, hits: np.ndarray) -> sp.csr_matrix:
        """The feature rows of cut `texts` from their word rows and keyword hits."""
        extra = sp.csr_matrix(hits.astype(np.float32) * KEYWORD_FEATURE_WEIGHT)
        if self.vectorizer_ is None:
            return extra
        if self._characters is None:  # words only (trained on unscaled rows)
            return sp.hstack([words, extra], format="csr")
        blocks = [words, self._characters.transform(texts), extra]
        return normalize(sp.hstack(blocks, format="csr"), copy=False)

    def vectors(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The texts' word TF-IDF rows alone (L2-normalised; no columns when the vocabulary is empty): what the
        texts' similarity is measured on."""
        return self._words(cut(texts, self.settings.max_chars))

    def _words(self, texts: list[str]) -> sp.csr_matrix:
        if self.vectorizer_ is None:
            return sp.csr_matrix((len(texts), 0), dtype=np.float32)
        return self.vectorizer_.transform(texts)

    @property
    def _characters(self) -> CharNgrams | None:
        # Models saved before character n-grams have no char_vectorizer_.
        return getattr(self, "char_vectorizer_", None)

    def hits_for(self, hits: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        return hits[:, [self.code_index_[c] for c in codes]]

    @property
    def n_terms(self) -> int:
        return len(self.vectorizer_.vocabulary_) if self.vectorizer_ is not None else 0

    @property
    def n_char_terms(self) -> int:
        return len(self._characters.vocabulary_) if self._characters is not None else 0
