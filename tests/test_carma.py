"""CARMA (SPEC §8): invariants of a briefly trained model on small pools (the chapter trains the real ones)."""
import pytest
import torch

from carma_nb.carma import CARMA, carma_hparams, load_carma, mask_kl, save_carma, train_carma
from carma_nb.classifier import train_classifier
from carma_nb.data import make_pools
from carma_nb.flow import fit_flow
from carma_nb.recourse import rejected

SMALL = {'classifier': (3000, 500, 500), 'causal': (3000, 500, 500), 'recourse': (2000, 500, 500)}


@pytest.fixture(scope='module')
def model():
    pools = make_pools('loan', 0, SMALL)
    clf = train_classifier('loan', pools.classifier, epochs=20, cache=False, verbose=False)
    flow = fit_flow('loan', pools.causal, epochs=40, batch=1000, cache=False, verbose=False)
    m = train_carma('loan', clf, flow, pools.recourse, hparams={'epochs': 40}, cache=False, verbose=False)
    return m, clf, flow, pools


def test_valid_under_flow_on_training_people_and_only_actionable(model):
    m, clf, flow, pools = model
    people = rejected(clf, pools.recourse.train.x)
    rec = m.recommend(people)
    assert (rec.prob >= 0.5).float().mean() > 0.95
    assert not rec.mask[:, [0, 1, 4]].any()                       # gender, age, duration never acted on
    assert torch.equal(rec.values[~rec.mask], people[~rec.mask])  # untouched features keep their values
    assert torch.equal(m.recommend(people).values, rec.values)    # evaluation is deterministic


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
    with pytest.raises(ValueError, match="prior must be 'uniform' or 'preference'"):
        train_carma('loan', clf, flow, pools.recourse, prior='flat')
    other = train_classifier('chain-lin', make_pools('chain-lin', 0, SMALL).classifier, epochs=2, cache=False, verbose=False)
    with pytest.raises(ValueError, match="trained for 'chain-lin', not 'loan'"):
        train_carma('loan', other, flow, pools.recourse)


def test_mask_kl_zero_at_prior():
    assert torch.allclose(mask_kl(torch.zeros(2, 7, 2), torch.full((7,), 0.5), torch.ones(7)), torch.zeros(2), atol=1e-6)
