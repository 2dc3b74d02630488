"""Only trusted content is loaded: skops types by platform policy, pickle by opt-in."""

from __future__ import annotations

import dataclasses
import operator

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from harbourmaster.bundle import TrustPolicy, format_for, load_bundle, save_bundle
from harbourmaster.errors import UntrustedContentError

UNTRUSTED = "_operator.neg"


@pytest.fixture(scope="module")
def negating_pipeline(cancer) -> Pipeline:
    features, target = cancer
    pipeline = Pipeline(
        [
            ("neg", FunctionTransformer(operator.neg)),
            ("model", LogisticRegression(max_iter=5000)),
        ]
    )
    return pipeline.fit(features, target)


def test_build_refuses_a_type_the_platform_does_not_trust(cancer, negating_pipeline, make_bundle):
    features, _ = cancer
    with pytest.raises(UntrustedContentError) as caught:
        make_bundle(negating_pipeline, features)
    assert UNTRUSTED in caught.value.message
    assert "harbourmaster trust PROJECT --add-type _operator.neg" in (caught.value.hint or "")


def test_load_refuses_untrusted_type_until_it_is_trusted(cancer, negating_pipeline, store, settings, make_bundle):
    features, _ = cancer
    trusting = TrustPolicy.default()
    trusting = dataclasses.replace(trusting, trusted_types=(UNTRUSTED,))
    digest = save_bundle(store, make_bundle(negating_pipeline, features, policy=trusting))

    with pytest.raises(UntrustedContentError) as caught:
        load_bundle(store, digest, settings)
    assert UNTRUSTED in caught.value.message
    assert "HARBOURMASTER_TRUSTED_TYPES" in (caught.value.hint or "")

    expected = negating_pipeline.predict(features)
    loaded = load_bundle(store, digest, settings, extra_trusted_types=[UNTRUSTED])
    np.testing.assert_array_equal(loaded.predict(features), expected)

    widened = dataclasses.replace(settings, trusted_type_prefixes=(*settings.trusted_type_prefixes, "_operator."))
    np.testing.assert_array_equal(load_bundle(store, digest, widened).predict(features), expected)


def test_skops_never_trusts_the_files_own_list(negating_pipeline):
    skops = format_for("skops")
    data = skops.dump(negating_pipeline)
    policy = TrustPolicy(trusted_type_prefixes=("sklearn.", "numpy."))
    with pytest.raises(UntrustedContentError, match=UNTRUSTED):
        skops.load(data, policy)
    # A code module is trusted only by its top-level name.
    assert TrustPolicy((), code_modules=("features",)).allows("features.Clip")
    assert not TrustPolicy((), code_modules=("features",)).allows("features_x.Clip")


def test_pickle_needs_explicit_trust(cancer, cancer_pipeline, store, settings, make_bundle):
    features, _ = cancer
    with pytest.raises(UntrustedContentError, match="pickle"):
        make_bundle(cancer_pipeline, features, format="pickle")

    bundle = make_bundle(cancer_pipeline, features, format="pickle", trusted_pickle=True)
    assert bundle.manifest.model_file == "model.pkl"
    assert bundle.manifest.trusted_pickle is True
    digest = save_bundle(store, bundle)

    # The manifest's flag is not trust: only the operator's settings are.
    with pytest.raises(UntrustedContentError) as caught:
        load_bundle(store, digest, settings)
    assert "HARBOURMASTER_TRUST_PICKLE=1" in (caught.value.hint or "")

    trusted = dataclasses.replace(settings, trust_pickle=True)
    loaded = load_bundle(store, digest, trusted)
    np.testing.assert_array_equal(loaded.predict(features), cancer_pipeline.predict(features))
