"""CARMA (chapters 7–9): invariants of a briefly trained model on small pools.

The chapters train the real ones."""

import copy
import multiprocessing as mp
import os
import time

import pytest
import torch
from torch import nn

from carma_nb.carma import CARMA, carma_hparams, load_carma, save_carma
from carma_nb.training import Recipe, get_recipe, mask_kl, train_carma
from carma_nb.improved import idle_acts
from carma_nb.classifier import ClassifierFit, train_classifier
from carma_nb.data import make_pools
from carma_nb.flow import FlowFit, fit_flow
from carma_nb.recourse import rejected
from carma_nb.vaca import VacaFit, fit_vaca

SMALL = {'classifier': (3000, 500, 500), 'causal': (3000, 500, 500), 'recourse': (2000, 500, 500)}


@pytest.fixture(scope='module')
def model():
    pools = make_pools('loan', 0, SMALL)
    clf = train_classifier('loan', pools.classifier, fit=ClassifierFit(epochs=20), cache=False, verbose=False)
    flow = fit_flow('loan', pools.causal, fit=FlowFit(epochs=40, batch=1000), cache=False, verbose=False)
    m = train_carma('loan', clf, flow, pools.recourse, hparams={'epochs': 40}, cache=False, verbose=False)
    return m, clf, flow, pools


def test_valid_under_flow_on_training_people_and_only_actionable(model):
    m, clf, flow, pools = model
    people = rejected(clf, pools.recourse.train.x)
    rec = m.recommend(people)
    assert (rec.prob >= 0.5).float().mean() > 0.95
    assert not rec.mask[:, [0, 1, 4]].any()  # gender, age, duration never acted on
    assert torch.equal(rec.values[~rec.mask], people[~rec.mask])  # untouched features keep their values
    assert torch.equal(m.recommend(people).values, rec.values)  # evaluation is deterministic


def test_accepted_people_get_empty_action(model):
    m, clf, flow, pools = model
    ok = pools.recourse.test.x[clf.predict_proba(pools.recourse.test.x) >= 0.5][:10]
    rec = m.recommend(ok)
    assert rec.accepted.all() and not rec.mask.any() and torch.equal(rec.values, ok)


def test_save_load_round_trip(model, tmp_path):
    m, clf, flow, pools = model
    p = save_carma(m, tmp_path / 'c.pt')
    again = load_carma(p, scm='loan')
    x = pools.recourse.test.x
    assert torch.equal(again.recommend(x).values, m.recommend(x).values)
    with pytest.raises(ValueError, match="has scm='loan' but scm='triangle-lin' was requested"):
        load_carma(p, scm='triangle-lin')


def test_bad_inputs_and_hparams(model):
    m, clf, flow, pools = model
    with pytest.raises(ValueError, match='6 columns but 7 features'):
        m.recommend(torch.zeros(3, 6))
    with pytest.raises(ValueError, match='unknown CARMA hyperparameters'):
        carma_hparams('loan', learning_rate=1)
    other = train_classifier(
        'chain-lin',
        make_pools('chain-lin', 0, SMALL).classifier,
        fit=ClassifierFit(epochs=2),
        cache=False,
        verbose=False,
    )
    with pytest.raises(ValueError, match="trained for 'chain-lin', not 'loan'"):
        train_carma('loan', other, flow, pools.recourse)


def test_mask_kl_zero_at_prior():
    assert torch.allclose(
        mask_kl(torch.zeros(2, 7, 2), torch.full((7,), 0.5), torch.ones(7)), torch.zeros(2), atol=1e-6
    )


def _force_idle_education(m, tol=None):
    "A copy of `m` that always acts on education (j = 2) with latent shift 0 (every education act idle), serving with `tol`."
    mm = copy.deepcopy(m)
    dz = mm.causal_model.latent_size
    with torch.no_grad():
        last_a = [l for l in mm.action_net if isinstance(l, nn.Linear)][-1]
        last_a.weight[2 * dz : 3 * dz].zero_()
        last_a.bias[2 * dz : 3 * dz] = 0.0
        last_m = [l for l in mm.mask_net if isinstance(l, nn.Linear)][-1]
        last_m.weight[4:6].zero_()
        last_m.bias[4], last_m.bias[5] = -5.0, 5.0  # logits (keep, intervene) of education
    mm.idle_tol = tol
    return mm.freeze()  # recompile the serving program


def test_idle_acts_are_found_and_dropped(model):
    m, clf, flow, pools = model
    people = rejected(clf, pools.recourse.test.x)
    tol = 1e-6  # only the forced, exactly-zero shifts are this small
    full, mm = _force_idle_education(m), _force_idle_education(m, tol)
    mask, idle = idle_acts(full, people, tol)
    assert mask[:, 2].all() and torch.equal(idle[:, 2], mask[:, 2]) and not idle[:, [3, 5, 6]].any()
    every, dropped = full.recommend(people), mm.recommend(people)
    assert (
        every.mask[:, 2].all() and not dropped.mask[:, 2].any()
    )  # dropped for everyone: nothing changes without it
    assert torch.equal(dropped.mask[:, [3, 5, 6]], every.mask[:, [3, 5, 6]])  # the other acts stay
    torch.testing.assert_close(dropped.x_cf, every.x_cf, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dropped.prob, every.prob, atol=1e-5, rtol=1e-5)
    assert torch.equal(dropped.values[:, 2], people[:, 2])  # no education target is reported
    assert torch.equal(mm.recommend(people[:5]).mask, dropped.mask[:5])  # a small batch, same answer
    loose = _force_idle_education(m, 0.05).recommend(people)  # a looser tolerance only ever drops idle acts
    assert (
        not (loose.mask & ~every.mask).any()
        and not (every.mask & ~loose.mask & ~idle_acts(full, people, 0.05)[1]).any()
    )
    with pytest.raises(ValueError, match='tol must be a finite number > 0'):
        idle_acts(full, people, float('nan'))


def test_idle_acts_with_vaca():
    "VACA has four latents per node: an act is idle when their shift's norm is below tol."
    pools = make_pools('loan', 0, SMALL)
    clf = train_classifier('loan', pools.classifier, fit=ClassifierFit(epochs=20), cache=False, verbose=False)
    vaca = fit_vaca('loan', pools.causal, fit=VacaFit(epochs=5), cache=False, verbose=False)
    m = train_carma('loan', clf, vaca, pools.recourse, hparams={'epochs': 5}, cache=False, verbose=False)
    people = rejected(clf, pools.recourse.test.x)
    mask, idle = idle_acts(_force_idle_education(m), people, 1e-6)
    assert mask[:, 2].all() and idle[:, 2].all()
    assert not _force_idle_education(m, 1e-6).recommend(people).mask[:, 2].any()


def test_the_paper_recipe_is_the_default_and_the_improved_one_differs():
    """Chapter 8 trains the paper's procedure by default; `recipe='improved'` (chapter 9) switches the
    additions on."""
    assert (
        get_recipe('paper', 'triangle-nlin') == Recipe() and carma_hparams('triangle-nlin')['margin'] == 0.003
    )
    improved = get_recipe('improved', 'triangle-nlin')
    assert (improved.candidates, improved.shift_scale, improved.margin) == (6, 2, 0.03)
    assert get_recipe('improved', 'loan', 'vaca').margin == 0.03
    with pytest.raises(ValueError, match="unknown recipe 'table5'"):
        get_recipe('table5', 'loan')


TINY = {'classifier': (1500, 300, 300), 'causal': (1500, 300, 300), 'recourse': (1000, 300, 300)}


def _carma_stack_in_process(args):
    "Train a tiny chain-lin CARMA stack in a cache shared with another process; log every seed trained."
    cache, log, barrier, seeds = args
    os.environ['CARMA_CACHE'] = cache
    import carma_nb.training as carma

    fit = carma._fit_carma_seeds

    def logged(st, todo, pool):
        with open(log, 'a') as f:
            f.write(' '.join(map(str, todo)) + '\n')
        time.sleep(1)  # the other process asks while this one trains
        return fit(st, todo, pool)

    carma._fit_carma_seeds = logged
    pools = make_pools('chain-lin', 0, TINY)
    clf = train_classifier(
        'chain-lin', pools.classifier, fit=ClassifierFit(epochs=2), cache=False, verbose=False
    )
    flow = fit_flow('chain-lin', pools.causal, fit=FlowFit(epochs=2, batch=1000), cache=False, verbose=False)
    recipe = carma.Recipe('two-phase', phases=(('polish', 1),))
    barrier.wait()  # both ask for the stack at the same moment
    options = carma.CarmaOptions(recipe=recipe, hparams={'epochs': 2}, verbose=False)
    ms = carma.train_carma_seeds('chain-lin', clf, flow, pools.recourse, seeds, options)
    return {s: m.action_net[0].weight.sum().item() for s, m in zip(seeds, ms)}


def test_two_processes_sharing_a_cache_train_a_stack_once(tmp_path):
    "The missing seeds are decided under the locks, so exactly one of two processes trains the stack."
    log, ctx = tmp_path / 'trained.txt', mp.get_context('spawn')
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        barrier = manager.Barrier(2)
        args = [(str(tmp_path / 'cache'), str(log), barrier, seeds) for seeds in ([0, 1], [1, 0])]
        a, b = pool.map_async(_carma_stack_in_process, args, chunksize=1).get(timeout=300)
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines  # one training, of both seeds
    assert sorted(map(int, lines[0].split())) == [0, 1]
    assert a == b  # the other process loaded the same models


def test_loss_parts():
    "The mask KL is zero at the prior, positive away from it; padding weighs nothing; the prior is checked."
    import torch
    from fastcore.test import test_close, test_fail

    from carma_nb.training import mask_kl, mask_prior, masked_mean

    test_close(mask_kl(torch.zeros(3, 7, 2), torch.full((7,), 0.5), torch.ones(7)), torch.zeros(3), eps=1e-6)
    assert (mask_kl(torch.tensor([[[0.0, 3.0]] * 7]), torch.full((7,), 0.5), torch.ones(7)) > 0).all()
    test_close(
        masked_mean(torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([1.0, 1.0, 0.0])), torch.tensor([2.0])
    )
    test_fail(lambda: mask_prior(torch.ones(3), 'flat'), contains="prior must be 'uniform' or 'preference'")


def test_bad_hyperparameters_are_refused_with_their_name():
    "Each bad hyperparameter value is refused, the message naming the key and the rule."
    from fastcore.test import test_fail

    from carma_nb.carma import carma_hparams

    for bad, message in (
        ({'epochs': 2.5}, 'epochs must be a whole number ≥ 1'),
        ({'epochs': '5'}, 'epochs must be a whole number'),
        ({'lr': float('inf')}, 'lr must be a finite number > 0'),
        ({'tau': 0}, 'tau must be a finite number > 0'),
        ({'mask_hidden': [0]}, 'every width in mask_hidden must be a whole number ≥ 1'),
        ({'batch': True}, 'batch must be a whole number'),
        ({'margin': -0.1}, 'margin must be a finite number ≥ 0'),
    ):
        test_fail(lambda: carma_hparams('loan', **bad), contains=message)
