import numpy as np

from mlbook_utils import baselines


def test_pairwise_distances_match_a_loop():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    d = baselines.pairwise_sq_distances(a, b)
    for i in range(2):
        for m in range(3):
            for n in range(5):
                assert np.isclose(d[i, m, n], ((a[i, m] - b[i, n]) ** 2).sum())


def test_nearest_neighbour_and_class_mean_on_a_small_case():
    # Class 0 has supports at 0 and 10, class 1 at 6. The query at 9 is nearest to a class-0
    # support (10) but nearest to the class-1 mean (6 vs 5).
    support = np.array([[[0.0], [10.0], [6.0], [6.0]]])
    labels = np.array([[0, 0, 1, 1]])
    query = np.array([[[9.0], [1.0]]])
    nn = baselines.nearest_neighbour(support, labels, query, 2)
    ncm = baselines.nearest_class_mean(support, labels, query, 2)
    assert nn.shape == (1, 2, 2) and ncm.shape == (1, 2, 2)
    assert nn.argmax(-1).tolist() == [[0, 0]]
    assert ncm.argmax(-1).tolist() == [[1, 0]]
    np.testing.assert_allclose(-nn[0, 0], [1.0, 9.0])
    np.testing.assert_allclose(-ncm[0, 0], [16.0, 9.0])
