"""auto-sklearn components that suit sparse, high-dimensional text with many labels.

auto-sklearn's own linear models turn decision values into probabilities with a softmax *across labels*, so for a
multilabel target a label's probability depends on every other label's score: thresholds cannot be tuned per label
and auto-sklearn's 0.5 cut proposes almost nothing. These components score each label on its own (a logistic link
per label), which is what per-label thresholds and confidences need. `register_components()` adds them to
auto-sklearn's registry (idempotent); the classes live here so that saved models unpickle without registration.
"""

from __future__ import annotations

import numpy as np
from autosklearn.pipeline.components.base import (
    AutoSklearnClassificationAlgorithm,
    AutoSklearnPreprocessingAlgorithm,
)
from autosklearn.pipeline.constants import DENSE, INPUT, PREDICTIONS, SPARSE, UNSIGNED_DATA
from ConfigSpace.configuration_space import ConfigurationSpace
from ConfigSpace.hyperparameters import CategoricalHyperparameter, UniformFloatHyperparameter

__all__ = ["BUILTIN_CLASSIFIERS", "CLASSIFIERS", "DATA_PREPROCESSOR", "KeepSparseFeatures", "OneVsRestLinear",
           "SparseLinearSVC", "SparseLogisticRegression", "register_components", "sigmoid"]

CLASSIFIERS = ("SparseLinearSVC", "SparseLogisticRegression")
BUILTIN_CLASSIFIERS = ("multinomial_nb",)
DATA_PREPROCESSOR = "KeepSparseFeatures"


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -30, 30)))


class OneVsRestLinear:
    """One binary linear model per label; `predict_proba` gives each label's own probability."""

    def __init__(self, C, class_weight, random_state=None):
        self.C = C
        self.class_weight = class_weight
        self.random_state = random_state
        self.estimator = None

    def _binary(self):
        raise NotImplementedError

    def fit(self, X, Y):
        from sklearn.multiclass import OneVsRestClassifier

        self.estimator = OneVsRestClassifier(self._binary(), n_jobs=1)
        self.estimator.fit(X, Y)
        return self

    def _fitted(self):
        if self.estimator is None:
            from sklearn.exceptions import NotFittedError  # an AttributeError too, as the unfitted None raised

            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit first.")
        return self.estimator

    def decision_function(self, X):
        return self._fitted().decision_function(X)

    def predict(self, X):
        return self._fitted().predict(X)

    def predict_proba(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:  # binary target: auto-sklearn expects (negative, positive) columns
            positive = sigmoid(scores)
            return np.column_stack([1 - positive, positive])
        return sigmoid(scores)

    # Set by each subclass: auto-sklearn's short name, a readable name, and the range and default of C.
    SHORTNAME = NAME = ""
    C_RANGE = (0.01, 20.0, 0.5)

    @classmethod
    def get_properties(cls, dataset_properties=None):
        return {
            "shortname": cls.SHORTNAME,
            "name": cls.NAME,
            "handles_regression": False,
            "handles_classification": True,
            "handles_multiclass": True,
            "handles_multilabel": True,
            "handles_multioutput": False,
            "is_deterministic": True,
            "input": (SPARSE, DENSE, UNSIGNED_DATA),
            "output": (PREDICTIONS,),
        }

    @classmethod
    def get_hyperparameter_search_space(cls, feat_type=None, dataset_properties=None):
        low, high, default = cls.C_RANGE
        cs = ConfigurationSpace()
        cs.add_hyperparameters(
            [
                UniformFloatHyperparameter("C", low, high, log=True, default_value=default),
                CategoricalHyperparameter("class_weight", ["none", "balanced"], default_value="none"),
            ]
        )
        return cs


class SparseLinearSVC(OneVsRestLinear, AutoSklearnClassificationAlgorithm):
    SHORTNAME, NAME = "sparse_linear_svc", "Linear SVM, one per label, logistic link"
    C_RANGE = (0.01, 20.0, 0.5)

    def _binary(self):
        from sklearn.svm import LinearSVC

        weight = None if self.class_weight == "none" else self.class_weight
        return LinearSVC(C=float(self.C), class_weight=weight, dual=True, max_iter=5000, random_state=self.random_state)


class SparseLogisticRegression(OneVsRestLinear, AutoSklearnClassificationAlgorithm):
    SHORTNAME, NAME = "sparse_logistic_regression", "Logistic regression, one per label"
    C_RANGE = (0.1, 1000.0, 10.0)

    def _binary(self):
        from sklearn.linear_model import LogisticRegression

        weight = None if self.class_weight == "none" else self.class_weight
        return LogisticRegression(
            C=float(self.C), class_weight=weight, solver="liblinear", max_iter=1000, random_state=self.random_state
        )


class KeepSparseFeatures(AutoSklearnPreprocessingAlgorithm):
    """TF-IDF is already scaled: skip auto-sklearn's imputation, rescaling and densifying choices."""

    def __init__(self, feat_type=None, **kwargs):
        self.feat_type = feat_type

    def fit(self, X, Y=None):
        return self

    def transform(self, X):
        return X

    @staticmethod
    def get_properties(dataset_properties=None):
        return {
            "shortname": DATA_PREPROCESSOR,
            "name": "Keep sparse features as they are",
            "handles_regression": True,
            "handles_classification": True,
            "handles_multiclass": True,
            "handles_multilabel": True,
            "handles_multioutput": True,
            "is_deterministic": True,
            "input": (DENSE, SPARSE, UNSIGNED_DATA),
            "output": (INPUT,),
        }

    @staticmethod
    def get_hyperparameter_search_space(feat_type=None, dataset_properties=None):
        return ConfigurationSpace()


def register_components() -> None:
    """Make the components above selectable by name in an auto-sklearn search (safe to call repeatedly)."""
    from autosklearn.pipeline.components import classification, data_preprocessing

    for component in (SparseLinearSVC, SparseLogisticRegression):
        if component.__name__ not in classification.additional_components.components:
            classification.add_classifier(component)
    if KeepSparseFeatures.__name__ not in data_preprocessing._addons.components:
        data_preprocessing.add_preprocessor(KeepSparseFeatures)
