"""A pytest plugin that runs scikit-learn's own estimator tests against gmmlimit's estimators.

Use (JAX defaults: x64 off; SK is the installed scikit-learn package directory)::

    SK=$(python -c "import sklearn, os; print(os.path.dirname(sklearn.__file__))")
    PYTHONPATH=$PWD:$PWD/tests/sklearn_upstream python -m pytest \
        -c tests/sklearn_upstream/pytest.ini --rootdir tests/sklearn_upstream --confcutdir $SK \
        -p upstream_plugin --upstream-target kmeans $SK/cluster/tests/test_k_means.py

(``--confcutdir`` makes pytest load scikit-learn's own conftest, which defines fixtures such as
``global_random_seed``.) ``--upstream-target`` is ``kmeans``
(sklearn/cluster/tests/test_k_means.py) or ``gmm``
(sklearn/mixture/tests/test_gaussian_mixture.py). Before the test module is imported,
``sklearn.cluster.KMeans`` (or ``sklearn.mixture.GaussianMixture``) is replaced by gmmlimit's
class, so the module's own imports and parametrisations pick ours up. Items that test
scikit-learn's private helpers, MiniBatchKMeans, scikit-learn's own functions rather than the
estimator, or a behaviour decided differently (listed in docs/sklearn.md) are skipped, each with
its reason.
"""

from __future__ import annotations

import pytest

# Test-function name -> reason it does not test our estimator (both upstream files).
_KMEANS_SKIP = {
    "test_relocate_empty_clusters": "private helper _relocate_empty_clusters_dense/_sparse",
    "test_minibatch_update_consistency": "MiniBatchKMeans private _mini_batch_step",
    "test_euclidean_distance": "private helpers _euclidean_dense_dense/_sparse_dense",
    "test_inertia": "private helpers _inertia_dense/_sparse",
    "test_is_same_clustering": "private helper _is_same_clustering",
    "test_sample_weight_init": "private method _init_centroids",
    "test_sample_weight_zero": "private method _init_centroids",
    "test_kmeans_plusplus_wrong_params": "scikit-learn's kmeans_plusplus function, not KMeans",
    "test_kmeans_plusplus_output": "scikit-learn's kmeans_plusplus function, not KMeans",
    "test_kmeans_plusplus_norms": "scikit-learn's kmeans_plusplus function, not KMeans",
    "test_kmeans_plusplus_dataorder": "scikit-learn's kmeans_plusplus function, not KMeans",
    "test_k_means_function": "scikit-learn's k_means function, not KMeans",
}

_GMM_SKIP = {
    "test_suffstat_sk_full": "private helper _estimate_gaussian_covariances_full",
    "test_suffstat_sk_tied": "private helper _estimate_gaussian_covariances_tied",
    "test_suffstat_sk_diag": "private helper _estimate_gaussian_covariances_diag",
    "test_gaussian_suffstat_sk_spherical": "private helper _estimate_gaussian_parameters",
    "test_compute_log_det_cholesky": "private helper _compute_log_det_cholesky",
    "test_gaussian_mixture_log_probabilities": "private helper _estimate_log_gaussian_prob",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": (
        "counts calls of the private _estimate_gaussian_parameters; our M-step is the variant's"
    ),
}

# Behaviours decided differently (docs/sklearn.md lists each with its reason).
_GMM_DIFFERENT = {
    "test_gaussian_mixture_setting_best_params": (
        "reg_covar=0 with a collapsing component: the variant's centred variance is clamped at "
        "0, so computing the precision refuses it (scikit-learn's uncentred formula leaves "
        "rounding noise > 0)"
    ),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--upstream-target", choices=("kmeans", "gmm"), default="kmeans")


def pytest_configure(config: pytest.Config) -> None:
    import sklearn.cluster
    import sklearn.mixture

    import gmmlimit.sklearn as ours

    if config.getoption("--upstream-target") == "kmeans":
        sklearn.cluster.KMeans = ours.KMeans
    else:
        sklearn.mixture.GaussianMixture = ours.GaussianMixture


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kmeans = config.getoption("--upstream-target") == "kmeans"
    table = _KMEANS_SKIP if kmeans else _GMM_SKIP
    for item in items:
        name = item.originalname if hasattr(item, "originalname") else item.name
        reason = table.get(name)
        if reason is None and not kmeans and name in _GMM_DIFFERENT:
            item.add_marker(pytest.mark.skip(reason=f"decided differently: {_GMM_DIFFERENT[name]}"))
            continue
        if reason is None and kmeans and ("minibatch" in item.name.lower()):
            reason = "MiniBatchKMeans"
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"not our estimator: {reason}"))
