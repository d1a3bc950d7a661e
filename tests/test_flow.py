"""Causal normalizing flow (chapter 4): graph-sparse Jacobian, inverse, interventions, gradients,
agreement with stock zuko, save/load, bad inputs. Small, fast fits (the chapters train the real ones)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from carma_nb.data import make_pools
from carma_nb.flow import FlowFit, CausalFlow, fit_flow, load_flow, save_flow, evaluate_causal_model, mmd
from carma_nb.scm import SCM_NAMES, get_scm

SMALL = {'classifier': (10, 10, 10), 'causal': (3000, 500, 500), 'recourse': (10, 10, 10)}


@pytest.fixture(scope='module')
def flows(tmp_path_factory):
    cache = tmp_path_factory.mktemp('cache')
    import os

    os.environ['CARMA_CACHE'] = str(cache)
    out = {
        n: (
            fit_flow(n, make_pools(n, 0, SMALL).causal, fit=FlowFit(epochs=30, batch=1000), verbose=False),
            make_pools(n, 0, SMALL),
        )
        for n in SCM_NAMES
    }
    del os.environ['CARMA_CACHE']
    return out


@pytest.mark.parametrize('name', SCM_NAMES)
def test_jacobian_is_zero_outside_graph(flows, name):
    flow, pools = flows[name]
    allowed = (flow.adjacency + torch.eye(flow.n_features)).bool()
    for x in pools.causal.test.x[:5]:
        J = torch.autograd.functional.jacobian(lambda v: flow.abduct(v[None])[0], x)
        assert not ((J.abs() > 0) & ~allowed).any()
        assert (J.diagonal() > 0).all()  # monotone in its own feature


@pytest.mark.parametrize('name', SCM_NAMES)
def test_fast_path_equals_zuko(flows, name):
    flow, pools = flows[name]
    z = flow.standardise(pools.causal.test.x)
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob_std(z), flow.maf().log_prob(z), atol=1e-4, rtol=1e-5)
        u = flow.abduct(pools.causal.test.x)
        torch.testing.assert_close(u, flow.maf().transform(z), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            flow.decode(u, standardised=True), flow.maf().transform.inv(u), atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(flow.decode(u), pools.causal.test.x, atol=2e-3, rtol=1e-4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SCM_NAMES), st.integers(0, 2**31))
def test_intervened_exact_and_non_descendants_fixed(flows, name, seed):
    flow, pools = flows[name]
    scm = get_scm(name)
    g = torch.Generator().manual_seed(seed)
    x = pools.causal.test.x[:16]
    mask = torch.rand(16, scm.n_features, generator=g) < 0.3
    values = x + torch.randn(x.shape, generator=g)
    with torch.no_grad():
        cf = flow.counterfactual(x, mask, values)
    assert torch.equal(cf[mask], values[mask])
    for r in range(16):
        I = mask[r].nonzero().flatten().tolist()
        moved = set(I).union(*[scm.descendants(i) for i in I]) if I else set()
        for j in set(range(scm.n_features)) - moved:
            assert cf[r, j] == x[r, j]


def test_gradient_wrt_values_matches_finite_differences(flows):
    flow, pools = flows['chain-nlin']
    f64 = load_flow(save_flow(flow, pools and __import__('tempfile').mkdtemp() + '/f.pt')).double()
    x = pools.causal.test.x[:6].double()
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[:, 1] = True
    v = x.clone()
    v[:, 1] += 0.7
    vv = v.clone().requires_grad_(True)
    out = f64.counterfactual(x, mask, vv)[:, 3].sum()
    out.backward()
    h = 1e-5
    vp, vm = v.clone(), v.clone()
    vp[:, 1] += h
    vm[:, 1] -= h
    fd = (f64.counterfactual(x, mask, vp)[:, 3] - f64.counterfactual(x, mask, vm)[:, 3]) / (2 * h)
    torch.testing.assert_close(vv.grad[:, 1], fd, atol=1e-6, rtol=1e-5)


def test_latent_counterfactual_zero_shift_is_factual_and_shift_moves_descendants(flows):
    flow, pools = flows['loan']
    x = pools.causal.test.x[:50]
    with torch.no_grad():
        u = flow.abduct(x)
        m = torch.zeros(50, 7)
        m[:, 5] = 1.0
        torch.testing.assert_close(
            flow.latent_counterfactual(u, m, torch.zeros_like(u)), x, atol=2e-3, rtol=1e-4
        )
        cf = flow.latent_counterfactual(u, m, torch.full_like(u, 0.5))
    assert (cf[:, 5] > x[:, 5]).all()  # income rises with its latent
    torch.testing.assert_close(cf[:, :5], x[:, :5], atol=2e-3, rtol=1e-4)  # non-descendants stay


def test_save_load_identical_and_other_scm_refused(flows, tmp_path):
    flow, pools = flows['triangle-nlin']
    p = save_flow(flow, tmp_path / 'f.pt')
    f2 = load_flow(p, scm='triangle-nlin')
    x = pools.causal.test.x
    mask = torch.zeros(len(x), 4, dtype=torch.bool)
    mask[:, 1] = True
    with torch.no_grad():
        assert torch.equal(f2.counterfactual(x, mask, x + 1), flow.counterfactual(x, mask, x + 1))
        assert torch.equal(f2.log_prob(x), flow.log_prob(x))
    with pytest.raises(ValueError, match="has scm='triangle-nlin' but scm='loan' was requested"):
        load_flow(p, scm='loan')
    with pytest.raises(ValueError, match="kind='flow'"):
        from carma_nb.core import save_checkpoint

        load_flow(save_checkpoint(tmp_path / 'c.pt', {}, {'kind': 'classifier', 'scm': 'loan'}))


def test_bad_inputs(flows):
    flow, pools = flows['loan']
    x = pools.causal.test.x[:3]
    m = torch.zeros(3, 7, dtype=torch.bool)
    with pytest.raises(ValueError, match='5 columns but 7 features'):
        flow.counterfactual(x[:, :5], m, x)
    with pytest.raises(ValueError, match='NaN or inf'):
        flow.abduct(x * float('nan'))
    with pytest.raises(TypeError, match='mask must be a boolean'):
        flow.counterfactual(x, m.int(), x)
    with pytest.raises(ValueError, match='do not broadcast'):
        flow.counterfactual(x, m[:2], x[:2])
    with pytest.raises(TypeError, match='must be a data Pool'):
        fit_flow('loan', pool=x)
    with pytest.raises(ValueError, match='valid names'):
        fit_flow('loans')
    for bad in (-1, 2.5, None):
        with pytest.raises(ValueError, match='patience must be a whole number'):
            fit_flow('loan', pools.causal, fit=FlowFit(epochs=1, patience=bad), cache=False)


def test_patience_is_part_of_the_config():
    """The plateau patience (the paper's 30 by default) is in every flow's cache key and changes training."""
    pool = make_pools('collider-lin', 0, SMALL).causal
    fit = lambda p: fit_flow(
        'collider-lin', pool, fit=FlowFit(epochs=40, batch=500, patience=p), cache=False, verbose=False
    )
    default, zero = fit(30), fit(0)
    assert default.config['patience'] == 30 and zero.config['patience'] == 0
    assert not torch.equal(
        default.log_prob(pool.test.x), zero.log_prob(pool.test.x)
    )  # patience 0 lowers the rate on every stall


def test_mmd_detects_difference():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 3, generator=g), torch.randn(500, 3, generator=g)
    assert mmd(a, b, torch.ones(3)) < 0.01 < mmd(a, b + 1, torch.ones(3))


def test_evaluate_runs_on_true_scm_as_model():
    """The true SCM, wrapped as a model, has ~zero counterfactual error: the metric measures what it says."""
    scm = get_scm('chain-lin')
    pools = make_pools(scm, 0, SMALL)

    class TrueModel:
        def log_prob(self, x):
            return torch.zeros(len(x))

        def sample(self, n, g=None):
            return scm.generate(scm.sample_noise(n, int(torch.randint(0, 10**6, (1,), generator=g))))

        def interventional_sample(self, n, mask, values, g=None):
            return scm.counterfactual(self.sample(n, g), mask, values)

        def counterfactual(self, x, mask, values):
            return scm.counterfactual(x, mask, values)

    ev = evaluate_causal_model(TrueModel(), scm, pools, n_mmd=300)
    assert ev['cf error'] == 0.0 and ev['obs MMD'] < 0.02


def test_training_path_equals_zuko():
    """Before freezing (live masked weights, parameters trainable) the density is zuko's too."""
    from carma_nb.data import StandardScaler

    pools = make_pools('loan', 0, SMALL)
    flow = CausalFlow('loan', (64,), StandardScaler().fit(pools.causal.train.x)).train()
    z = flow.standardise(pools.causal.val.x)
    lp = flow.log_prob_std(z)
    assert lp.requires_grad
    torch.testing.assert_close(lp, flow.maf().log_prob(z), atol=1e-4, rtol=1e-5)


def test_trained_models_do_not_depend_on_the_callers_thread_count():
    "Trainers run on one thread (core.one_thread): a model depends only on its configuration."
    from carma_nb.classifier import ClassifierFit, train_classifier

    pools = make_pools(
        'loan', 0, {'classifier': (2000, 200, 200), 'causal': (2000, 200, 200), 'recourse': (200, 100, 100)}
    )
    n0, out = torch.get_num_threads(), []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            clf = train_classifier('loan', pools.classifier,
                                   fit=ClassifierFit(epochs=5), cache=False, verbose=False)
            flow = fit_flow('loan', pools.causal, fit=FlowFit(epochs=20, batch=500),
                            cache=False, verbose=False)
            assert torch.get_num_threads() == threads  # the caller's setting is restored
            out.append((clf.predict_proba(pools.causal.test.x), flow.abduct(pools.causal.test.x)))
    finally:
        torch.set_num_threads(n0)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
