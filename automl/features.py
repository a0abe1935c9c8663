"""Text featurisation: TF-IDF over the cut, unprocessed text, plus one column per keyword rule hit."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from automl.keywords import KeywordMatcher
from automl.settings import ModelSettings
from automl.taxonomy import Taxonomy

log = logging.getLogger(__name__)
# Keyword hits as extra features (at this weight beside the TF-IDF terms) let a model learn when a rule can be trusted.
KEYWORD_FEATURE_WEIGHT = 1.0


def cut(texts: Sequence[str], max_chars: int) -> list[str]:
    return [t[:max_chars] for t in texts]


class TextFeatures:
    """Fits TF-IDF on training texts; transforms texts into (features, keyword hits of every taxonomy code)."""

    def __init__(self, taxonomy: Taxonomy, settings: ModelSettings):
        self.taxonomy = taxonomy
        self.settings = settings

    def fit(self, texts: Sequence[str]) -> TextFeatures:
        s = self.settings
        texts = cut(texts, s.max_chars)
        self.matcher_ = KeywordMatcher(self.taxonomy, sorted(self.taxonomy.nodes))
        self.code_index_ = {c: i for i, c in enumerate(self.matcher_.codes)}
        self.vectorizer_ = None  # no usable text: keyword hits are the only features
        for max_df, min_df in ((s.max_df, s.min_df), (1.0, 1)):
            vectorizer = TfidfVectorizer(
                ngram_range=(1, s.ngram_max), max_df=max_df, min_df=min_df, sublinear_tf=True,
                dtype=np.float32,
            )
            try:
                vectorizer.fit(texts)
                self.vectorizer_ = vectorizer
                break
            except ValueError as exc:  # tiny corpora: max_df/min_df can prune every term
                log.warning("TF-IDF with max_df=%s min_df=%s kept no terms (%s)", max_df, min_df, exc)
        return self

    def transform(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        texts = cut(texts, self.settings.max_chars)
        hits = self.matcher_.match(texts)
        extra = sp.csr_matrix(hits.astype(np.float32) * KEYWORD_FEATURE_WEIGHT)
        if self.vectorizer_ is None:
            return extra, hits
        return sp.hstack([self.vectorizer_.transform(texts), extra], format="csr"), hits

    def vectors(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The texts' TF-IDF rows alone (L2-normalised; no columns when the vocabulary is empty): what the texts'
        similarity is measured on."""
        if self.vectorizer_ is None:
            return sp.csr_matrix((len(texts), 0), dtype=np.float32)
        return self.vectorizer_.transform(cut(texts, self.settings.max_chars))

    def hits_for(self, hits: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        return hits[:, [self.code_index_[c] for c in codes]]

    @property
    def n_terms(self) -> int:
        return len(self.vectorizer_.vocabulary_) if self.vectorizer_ is not None else 0
