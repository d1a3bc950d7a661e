"""Downstream classifier (chapter 3): architecture per SCM, raw-feature interface, frozen, save/load."""

import pytest
import torch

from carma_nb.classifier import (ClassifierFit,
    CLASSIFIER_HIDDEN,
    Classifier,
    accuracy,
    load_classifier,
    save_classifier,
    train_classifier,
)
from carma_nb.data import make_pools

SMALL = {'classifier': (2000, 500, 500), 'causal': (10, 10, 10), 'recourse': (500, 10, 10)}


def test_architectures_match_spec():
    assert CLASSIFIER_HIDDEN == {
        'triangle-lin': (),
        'collider-lin': (),
        'chain-lin': (),
        'triangle-nlin': (16,),
        'collider-nlin': (16,),
        'chain-nlin': (16,),
        'loan': (32, 32),
    }


@pytest.fixture(scope='module')
def clf():
    """A small loan classifier; Adam converges in 20 epochs (the default, plain SGD, needs hundreds)."""
    pools = make_pools('loan', 0, SMALL)
    return train_classifier(
        'loan', pools.classifier, fit=ClassifierFit(epochs=20, optimizer='adam'), cache=False, verbose=False
    ), pools


def test_trained_frozen_differentiable(clf):
    c, pools = clf
    assert [type(m).__name__ for m in c.net] == ['Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']
    assert c.predict_proba(pools.recourse.train.x[:5], check=False).shape == (5,)
    acc = accuracy(c, pools.classifier.val)
    assert acc > 0.9
    x = pools.recourse.train.x[:8].clone().requires_grad_(True)
    c.predict_proba(x).sum().backward()
    assert x.grad.abs().sum() > 0 and not any(p.requires_grad for p in c.parameters())
    # raw features in: the scaler is inside the model
    z = (pools.recourse.train.x - c.mean) / c.std
    torch.testing.assert_close(c.predict_proba(pools.recourse.train.x), torch.sigmoid(c.net(z).squeeze(-1)))


def test_save_load_and_wrong_scm(clf, tmp_path):
    c, pools = clf
    p = save_classifier(c, tmp_path / 'c.pt')
    c2 = load_classifier(p, scm='loan')
    assert torch.equal(c2.predict_proba(pools.classifier.test.x), c.predict_proba(pools.classifier.test.x))
    with pytest.raises(ValueError, match="has scm='loan' but scm='chain-nlin' was requested"):
        load_classifier(p, scm='chain-nlin')


def test_bad_inputs(clf):
    c, pools = clf
    with pytest.raises(ValueError, match='6 columns but 7 features are expected'):
        c.predict_proba(torch.zeros(2, 6))
    with pytest.raises(ValueError, match='NaN or inf'):
        c.decide(torch.full((2, 7), float('inf')))
    with pytest.raises(TypeError, match='must be a data Pool'):
        train_classifier('loan', pool=torch.zeros(3, 7))
    with pytest.raises(ValueError, match='epochs must be a whole number ≥ 1'):
        train_classifier('loan', pools.classifier, fit=ClassifierFit(epochs=0), cache=False)


def test_optimizer_choice(clf):
    """Plain SGD (the original code's) is the default; both optimizers are part of the model's configuration."""
    c, pools = clf
    sgd = train_classifier('loan', pools.classifier, fit=ClassifierFit(epochs=20), cache=False, verbose=False)
    assert sgd.config['optimizer'] == 'sgd' and c.config['optimizer'] == 'adam'
    assert accuracy(sgd, pools.classifier.val) < accuracy(
        c, pools.classifier.val
    )  # 20 epochs of SGD at lr 1e-3 are far from converged
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adam', 'sgd'\]"):
        train_classifier('loan', pools.classifier, fit=ClassifierFit(epochs=1, optimizer='adamw'),
                         cache=False)
