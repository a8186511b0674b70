"""One outlier among rows far from the origin (``gmmlimit._offset``, rule 2): the bulk translated.

2000 float32 rows at 1e6 + N(0, 1) in two features, row 0 set to (0, 0) (a "null island" row
of GPS data), K = 8 starting means drawn from the rows (row 0 among them). The features do not
lie within a factor of two (rule 1), but each one's largest value holds a strict majority of
the rows within 1/16 of it, so each feature is computed less its largest value: exact for every
row (0 - c too). Before rule 2 they were computed as given and the expanded squared distances
cancelled: 1723 of 2000 labels of one E-step were not the nearest mean's, and ``gl.kmeans``
ran 300 iterations to J = 4347. Prints the offset, how many labels of one E-step are not the
nearest mean's (float64), and ``gl.kmeans`` against a float64 NumPy Lloyd from the same start
(``gl.kmeans`` counts the E-step that finds no label change: one more than Lloyd's updates).
Cited in docs/design.md ("Data far from the origin").

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/far_outlier.py``
"""

import numpy as np

import gmmlimit as gl
from gmmlimit._offset import offset_of


def numpy_lloyd(X: np.ndarray, means: np.ndarray, max_iter: int = 300) -> tuple:
    """Lloyd's iterations in float64 NumPy (no empty cluster occurs here): means, labels, n."""
    X, means = np.asarray(X, np.float64), np.asarray(means, np.float64).copy()
    labels = None
    for it in range(max_iter):
        new = ((X[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        if labels is not None and np.array_equal(new, labels):
            return means, labels, it
        labels = new
        for k in range(len(means)):
            if np.any(labels == k):
                means[k] = X[labels == k].mean(0)
    return means, labels, max_iter


def main() -> None:
    rng = np.random.default_rng(6)
    X = (1e6 + rng.normal(size=(2000, 2))).astype(np.float32)
    X[0] = 0.0
    m0 = X[[0, *rng.choice(np.arange(1, 2000), 7, replace=False)]]
    print(f"offset: {offset_of(X)} (each feature's largest value; None: computed as given)")
    exact = ((X[:, None, :].astype(np.float64) - m0[None].astype(np.float64)) ** 2).sum(-1)
    labels = np.asarray(gl.responsibilities(X, m0, 0.0)).argmax(1)
    wrong = int((labels != exact.argmin(1)).sum())
    print(f"one E-step: {wrong} of {len(X)} labels are not the nearest mean's")
    fit = gl.kmeans(X, m0)
    print(f"gl.kmeans: {int(fit.n_iter)} iterations, converged {bool(fit.converged)}, "
          f"J = {float(fit.distortion):.6g}")  # fmt: skip
    means, ref_labels, n_iter = numpy_lloyd(X, m0)
    J = float(((X.astype(np.float64) - means[ref_labels]) ** 2).sum())
    same = bool(np.array_equal(np.asarray(fit.labels), ref_labels))
    print(f"float64 NumPy Lloyd: {n_iter} updates (+1 confirming E-step), J = {J:.6g}; "
          f"the same labels as gl.kmeans: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
