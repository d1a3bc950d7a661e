"""Data pools (chapter 2): sizes, explicit seeds, independence, labels, scaler."""

import numpy as np
import pytest
import torch

from carma_nb.data import POOL_SIZES, POOLS, SPLITS, StandardScaler, make_pools, split_seed
from carma_nb.scm import SCM_NAMES, get_scm


@pytest.mark.parametrize('name', SCM_NAMES)
def test_pools_match_spec(name):
    p = make_pools(name, seed=0)
    scm = get_scm(name)
    assert POOL_SIZES == {
        'classifier': (10_000, 5_000, 5_000),
        'causal': (20_000, 2_500, 2_500),
        'recourse': (10_000, 5_000, 5_000),
    }
    for pool in POOLS:
        for split, n in zip(SPLITS, POOL_SIZES[pool]):
            s = getattr(p[pool], split)
            assert s.x.shape == (n, scm.n_features) and s.u.shape == s.x.shape and s.y.shape == (n,)
            assert s.x.dtype == torch.float32 and s.y.dtype == torch.int64
            # the stored split is exactly what its own seed regenerates
            u = scm.sample_noise(n, np.random.default_rng(split_seed(0, pool, split)), torch.float64)
            assert torch.equal(s.u, u.float())
            assert torch.equal(s.y, scm.label(scm.generate(u), u))


def test_splits_are_independent_and_seeded():
    a, b = make_pools('triangle-lin', seed=0), make_pools('triangle-lin', seed=1)
    assert not torch.equal(a.recourse.train.x, b.recourse.train.x)
    seeds = {getattr(a[p], s).seed for p in POOLS for s in SPLITS}
    assert len(seeds) == 9
    first_rows = torch.stack([getattr(a[p], s).u[0] for p in POOLS for s in SPLITS])
    assert len(torch.unique(first_rows, dim=0)) == 9


def test_scaler_unbiased_and_round_trip():
    x = torch.randn(50, 3, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64) + 5
    sc = StandardScaler().fit(x)
    torch.testing.assert_close(sc.std, torch.tensor(np.std(x.numpy(), axis=0, ddof=1)))
    torch.testing.assert_close(sc.inverse_transform(sc.transform(x)), x)
    sc2 = StandardScaler.from_state_dict(sc.state_dict())
    torch.testing.assert_close(sc2.transform(x), sc.transform(x))
    with pytest.raises(ValueError, match="keys 'mean' and 'std'"):
        StandardScaler.from_state_dict({'mean': sc.mean})
    with pytest.raises(ValueError, match='at least 2 rows'):
        StandardScaler().fit(x[:1])


def test_bad_arguments():
    with pytest.raises(ValueError, match='valid names'):
        make_pools('triangle')
    with pytest.raises(ValueError, match='unknown pool'):
        split_seed(0, 'oracle', 'train')
    with pytest.raises(KeyError, match='unknown pool'):
        make_pools(
            'loan', sizes={'classifier': (10, 10, 10), 'causal': (10, 10, 10), 'recourse': (10, 10, 10)}
        )['x']


def test_model_cache_retrains_after_an_scm_is_redefined(tmp_path, monkeypatch):
    """A cached model must not outlive the equations it was trained on: redefining a registered SCM under
    the same name (same seeds, same sizes) gives new data, a new split_id and a freshly trained flow."""
    from carma_nb.data import split_id
    from carma_nb.flow import FlowFit, fit_flow
    from carma_nb.scm import SCM, additive, normal, register_scm

    monkeypatch.setenv('CARMA_CACHE', str(tmp_path))
    small = {'classifier': (600, 100, 100), 'causal': (1500, 300, 300), 'recourse': (600, 100, 100)}
    mask, x, v = torch.tensor([[True, False]]), torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    effects = []
    for i, slope in enumerate((2.0, -1.0)):
        nodes = [
            additive('a', (), lambda x: 0.0, normal(0, 1)),
            additive('b', (0,), lambda x, s=slope: s * x[0], normal(0, 1)),
        ]
        register_scm(
            'cache-pair', lambda nodes=nodes: SCM('cache-pair', nodes, lambda x, u: x[1] > 0), replace=i > 0
        )
        pools = make_pools('cache-pair', seed=0, sizes=small)
        flow = fit_flow('cache-pair', pools.causal, fit=FlowFit(epochs=150, batch=500), verbose=False)
        effects.append(float(flow.counterfactual(x, mask, v)[0, 1]))
        ids = split_id(pools.causal.train)
    assert len(list((tmp_path / 'flow').glob('*.pt'))) == 2  # two configs, two trainings
    assert effects[0] == pytest.approx(2.0, abs=0.3) and effects[1] == pytest.approx(-1.0, abs=0.3), effects
    assert len(ids) == 5 and isinstance(ids[-1], str)
