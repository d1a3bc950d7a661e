"""The oracle (chapter 6) and the shared recourse problem and evaluation (chapter 5)."""

import dataclasses
import itertools
import math

import pytest
import torch

from carma_nb.classifier import ClassifierFit, train_classifier
from carma_nb.data import make_pools
from carma_nb.oracle import (
    cached_oracle,
    candidate_levels,
    oracle_bins,
    oracle_recourse,
    oracle_recourse_loop,
    person_grids,
)
from carma_nb.optimum import optimal_recourse, subset_masks
from carma_nb.recourse import as_weights, evaluate_recourse, make_recommendation, recourse_problem, rejected
from carma_nb.scm import SCM_NAMES, get_scm

SIZES = {'classifier': (3000, 500, 500), 'causal': (10, 10, 10), 'recourse': (3000, 1000, 1000)}


@pytest.fixture(scope='module')
def setups(tmp_path_factory):
    import os

    os.environ['CARMA_CACHE'] = str(tmp_path_factory.mktemp('cache'))
    out = {}
    for n in SCM_NAMES:
        pools = make_pools(n, 0, SIZES)
        clf = train_classifier(
            n, pools.classifier, fit=ClassifierFit(epochs=15, optimizer='adam'), verbose=False
        )
        out[n] = (recourse_problem(n, pools), clf, rejected(clf, pools.recourse.test.x, 20))
    del os.environ['CARMA_CACHE']
    return out


@pytest.mark.parametrize('name,early_exit', itertools.product(SCM_NAMES, [False, True]))
def test_batched_equals_loop_on_20_people(setups, name, early_exit):
    problem, clf, people = setups[name]
    assert len(people) == 20
    fast = oracle_recourse(
        problem, clf, people, bins=4, max_memory=3e5, early_exit=early_exit, verbose=False
    )  # many blocks
    slow = oracle_recourse_loop(problem, clf, people, bins=4)
    assert torch.equal(fast.found, slow.found) and torch.equal(fast.index, slow.index)
    assert torch.equal(fast.mask, slow.mask)
    torch.testing.assert_close(fast.values, slow.values)
    torch.testing.assert_close(fast.cost[fast.found], slow.cost[slow.found])


@pytest.mark.parametrize('name', SCM_NAMES)
def test_early_exit_equals_every_candidate_on_the_full_grid(setups, name):
    "Early exit settles people in rounds (256, 1 024, … candidates): same answers as the full search."
    problem, clf, people = setups[name]
    for max_memory in (1e8, 2e6):  # one block of people, and many small ones
        full = oracle_recourse(problem, clf, people, early_exit=False, max_memory=max_memory, verbose=False)
        early = oracle_recourse(problem, clf, people, max_memory=max_memory, verbose=False)
        for k in ('mask', 'values', 'index', 'found', 'x_cf'):
            assert torch.equal(getattr(full, k), getattr(early, k)), k
        assert torch.equal(full.cost.nan_to_num(-1), early.cost.nan_to_num(-1))


@pytest.mark.parametrize('name', ['triangle-nlin', 'loan'])
def test_chosen_action_is_valid_and_no_cheaper_valid_candidate(setups, name):
    problem, clf, people = setups[name]
    scm = problem.scm
    res = oracle_recourse(problem, clf, people, bins=5, verbose=False)
    # valid in the true SCM
    replay = scm.counterfactual(people, res.mask, res.values)
    assert (clf.predict_proba(replay)[res.found] >= 0.5).all()
    # enumerate every candidate by hand: none valid is cheaper
    act = scm.actionable
    grids = person_grids(problem, people, 5)
    for p, person in enumerate(people[:5]):
        best = math.inf
        for levels in itertools.product(range(6), repeat=len(act)):
            if not any(levels):
                continue
            m = torch.zeros(1, scm.n_features, dtype=torch.bool)
            v = person[None].clone()
            for k, (j, l) in enumerate(zip(act, levels)):
                if l:
                    m[0, j] = True
                    v[0, j] = grids[p, k, l - 1]
            if clf.predict_proba(scm.counterfactual(person[None], m, v)) >= 0.5:
                best = min(best, float(problem.cost(person[None], v, m)))
        assert (best == math.inf and not res.found[p]) or abs(best - float(res.cost[p])) < 1e-6


def test_grid_is_centred_on_the_person(setups):
    problem, clf, people = setups['loan']
    g = person_grids(problem, people[:3], 15)
    act = problem.scm.actionable
    torch.testing.assert_close(g[..., 0], 2 * problem.lo[act] - people[:3, act])
    torch.testing.assert_close(g[..., -1], 2 * problem.hi[act] - people[:3, act])
    centre = problem.lo[act] + problem.hi[act] - people[:3, act]
    torch.testing.assert_close((g[..., 0] + g[..., -1]) / 2, centre)
    assert oracle_bins('loan') == 15 and oracle_bins('chain-lin') == 25
    assert len(candidate_levels(4, 15)) == 65_535 and len(candidate_levels(3, 25)) == 17_575


def test_weights_shift_the_choice_away_from_a_costly_feature(setups):
    problem, clf, people = setups['loan']
    base = oracle_recourse(problem, clf, people, bins=6, verbose=False)
    weighted = dataclasses.replace(problem, weights=as_weights(problem.scm, {'income': 50}))
    heavy = oracle_recourse(weighted, clf, people, bins=6, verbose=False)
    j = problem.scm.index('income')
    assert heavy.mask[:, j].sum() < base.mask[:, j].sum()
    # weighted cost is never below the unweighted cost of the same people (weights ≥ 1)
    assert (heavy.cost[heavy.found] >= base.cost[heavy.found] - 1e-7).all()


def test_bad_inputs(setups):
    problem, clf, people = setups['loan']
    with pytest.raises(ValueError, match='3 columns but 7 features'):
        oracle_recourse(problem, clf, people[:, :3])
    with pytest.raises(ValueError, match=r'bins \(the grid spans two end points\) must be a whole number'):
        oracle_recourse(problem, clf, people, bins=1)
    with pytest.raises(ValueError, match='max_memory'):
        oracle_recourse(problem, clf, people, max_memory=0)
    with pytest.raises(ValueError, match='NaN or inf'):
        oracle_recourse(problem, clf, people * float('nan'))


def test_evaluation_metrics_and_errors(setups):
    problem, clf, people = setups['loan']
    n = len(people)
    m = torch.zeros(n, 7, dtype=torch.bool)
    m[:, 6] = True
    v = people.clone()
    v[:, 6] += 100.0  # huge savings: everybody accepted
    rec = make_recommendation('loan', clf, people, m, v)
    rep = evaluate_recourse(problem, clf, people, rec)
    assert rep.metrics['validity %'] == 100.0 and rep.metrics['acts'] == 1.0
    rec.found = torch.zeros(n, dtype=torch.bool)
    rec.found[:5] = True
    rep2 = evaluate_recourse(problem, clf, people, rec)
    assert rep2.metrics['found'] == 5 and rep2.metrics['validity %'] == pytest.approx(500 / n)
    assert torch.isnan(rep2.cost[5:]).all()
    bad = m.clone()
    bad[:, 1] = True
    with pytest.raises(ValueError, match="'age', which is not actionable in loan"):
        evaluate_recourse(problem, clf, people, make_recommendation('loan', clf, people, bad, v))
    with pytest.raises(ValueError, match='one action per person'):
        evaluate_recourse(problem, clf, people, rec.rows(slice(0, 1)))
    with pytest.raises(ValueError, match='got 3 weights but loan has 4 actionable'):
        as_weights('loan', [1, 2, 3])


def test_original_convention_takes_ranges_from_the_rejected_training_people(setups):
    problem, clf, people = setups['loan']
    pools = make_pools('loan', 0, SIZES)
    orig = recourse_problem('loan', pools, ranges_from='rejected', clf=clf)
    rej = rejected(clf, pools.recourse.train.x)
    assert 0 < len(rej) < len(pools.recourse.train.x)
    torch.testing.assert_close(orig.lo, rej.min(0).values)
    torch.testing.assert_close(orig.hi, rej.max(0).values)
    z = (rej.double() - problem.mean.double()) / problem.std.double()
    torch.testing.assert_close(orig.ranges, (z.max(0).values - z.min(0).values).float())
    assert torch.equal(orig.mean, problem.mean) and torch.equal(orig.std, problem.std)  # the same scaling
    assert (orig.ranges <= problem.ranges).all()
    # the grid spans the rejected people's range; the same action costs more in the original units
    g = person_grids(orig, people[:3], 15)
    act = problem.scm.actionable
    torch.testing.assert_close(g[..., 0], 2 * rej.min(0).values[act] - people[:3, act])
    m = torch.zeros(3, 7, dtype=torch.bool)
    m[:, 5] = True
    v = people[:3].clone()
    v[:, 5] += 1
    assert (orig.cost(people[:3], v, m) > problem.cost(people[:3], v, m)).all()


def test_original_convention_refuses_what_it_cannot_build(setups):
    problem, clf, people = setups['loan']
    pools = make_pools('loan', 0, SIZES)
    with pytest.raises(ValueError, match='pass clf='):
        recourse_problem('loan', pools, ranges_from='rejected')
    with pytest.raises(ValueError, match="only with ranges_from='rejected'"):
        recourse_problem('loan', pools, clf=clf)
    with pytest.raises(ValueError, match='ranges_from must be one of'):
        recourse_problem('loan', pools, ranges_from='accepted', clf=clf)


def test_cached_oracle_is_keyed_by_the_whole_problem(setups, tmp_path, monkeypatch):
    monkeypatch.setenv('CARMA_CACHE', str(tmp_path))
    problem, clf, people = setups['chain-lin']
    pools = make_pools('chain-lin', 0, SIZES)
    orig = recourse_problem('chain-lin', pools, ranges_from='rejected', clf=clf)
    a = cached_oracle(problem, clf, people[:5], bins=4)
    b = cached_oracle(orig, clf, people[:5], bins=4)
    assert len(list((tmp_path / 'oracle').glob('*.pt'))) == 2  # two problems, two entries
    assert torch.equal(a.index, oracle_recourse(problem, clf, people[:5], bins=4, verbose=False).index)
    assert torch.equal(b.index, oracle_recourse(orig, clf, people[:5], bins=4, verbose=False).index)
    assert torch.equal(cached_oracle(orig, clf, people[:5], bins=4).index, b.index)  # read back
    assert len(list((tmp_path / 'oracle').glob('*.pt'))) == 2
    with pytest.raises(TypeError, match='problem must be a RecourseProblem'):
        cached_oracle('chain-lin', clf, people[:5])


@pytest.mark.parametrize('name', SCM_NAMES)
def test_optimum_is_accepted_and_never_dearer_than_the_grid(setups, name):
    problem, clf, people = setups[name]
    grid = oracle_recourse(problem, clf, people, verbose=False)
    opt = optimal_recourse(problem, clf, people, grid)
    assert torch.equal(opt.found, grid.found) and (opt.prob[opt.found] >= 0.5).all()
    assert (opt.cost[opt.found] <= grid.cost[grid.found] + 1e-9).all()
    replay = problem.scm.counterfactual(people, opt.mask, opt.values)  # valid in the true SCM
    assert (clf.predict_proba(replay)[opt.found] >= 0.5).all()
    alone = optimal_recourse(problem, clf, people)  # without the grid (float32: other batch sizes)
    assert (alone.cost[alone.found] >= opt.cost[alone.found] * (1 - 1e-5)).all()
    assert len(subset_masks(name)) == 2 ** len(problem.scm.actionable) - 1


def test_optimum_refuses_bad_input(setups):
    problem, clf, people = setups['loan']
    with pytest.raises(ValueError, match='3 columns but 7 features'):
        optimal_recourse(problem, clf, people[:, :3])
    with pytest.raises(ValueError, match='steps must be a whole number'):
        optimal_recourse(problem, clf, people, steps=0)


def test_batched_oracle_refuses_bad_input(setups):
    problem, clf, people = setups['loan']
    for kw, msg in [
        ({'x': people[:, :3]}, '3 columns but 7 features'),
        ({'bins': 1}, r'bins \(the grid spans two end points\)'),
        ({'max_memory': 0}, 'max_memory must be a positive'),
    ]:
        with pytest.raises(ValueError, match=msg):
            oracle_recourse(problem, clf, kw.pop('x', people), verbose=False, **kw)
