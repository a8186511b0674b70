"""scikit-learn estimators on the compiled driver, ``VariantMixture`` for any variant.

``KMeans``, ``GaussianMixture`` and ``IsotropicGaussianMixture`` are drop-ins (docs/sklearn.md).

They pass ``sklearn.utils.estimator_checks`` and so drop into pipelines, grid searches (sigma2 is
an ordinary hyper-parameter: ``GridSearchCV(IsotropicGaussianMixture(k), {"sigma2": [...]})``
scores by held-out log-likelihood) and metrics.

Randomness: ``random_state`` (None, an int or a ``numpy.random.RandomState``) is turned, through
``sklearn.utils.check_random_state``, into one integer seed and then one explicit
``jax.random.key``; restart i uses ``jax.random.split(key, n_init)[i]``. None follows scikit-learn's
convention (numpy's global generator), so an int is needed for reproducible fits.

Compilation: JAX compiles once per array shape. To keep many small fits (cross-validation, the
estimator checks) from recompiling for every size, the rows are padded to the next power of two
(at least 256) with zero-weight copies of the first row and the columns to the next power of two
(at least 8) with zeros.
Neither changes any distance, statistic or label of the real rows; the padded rows carry no
weight and always share the first row's label.
"""

from .._variant_estimator import VariantMixture
from ._gaussian_mixture import GaussianMixture
from ._isotropic import IsotropicGaussianMixture
from ._kmeans import KMeans

__all__ = ["GaussianMixture", "IsotropicGaussianMixture", "KMeans", "VariantMixture"]
