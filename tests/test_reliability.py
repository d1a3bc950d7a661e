"""Nothing silently wrong: stacking never changes a model, damaged model files and bad settings are refused,
a collapsed training says so (issue 20, items 2, 3, 10, 11)."""

import os
import time
import warnings

import pytest
import torch

from carma_nb.carma import carma_hparams, load_carma, save_carma
from carma_nb.training import COLLAPSED, CarmaOptions, TrainingCollapsed, train_carma, train_carma_seeds
from carma_nb.classifier import ClassifierFit, train_classifier
from carma_nb.core import TrainOptions, load_checkpoint, save_checkpoint
from carma_nb.data import make_pools
from carma_nb.dice_vae import train_dice_vae, train_dice_vae_seeds
from carma_nb.flow import FlowFit, fit_flow
from carma_nb.oracle import cached_oracle
from carma_nb.recourse import recourse_problem
from carma_nb.vaca import VacaFit, fit_vaca

SMALL = {'classifier': (3000, 500, 500), 'causal': (3000, 500, 500), 'recourse': (2000, 500, 500)}


def quick_models(scm):
    "The quick profile's classifier and flow (cached by the chapters' run) and the data pools."
    pools = make_pools(scm)
    return (
        pools,
        train_classifier(scm, pools.classifier, 'quick', verbose=False),
        fit_flow(scm, pools.causal, 'quick', verbose=False),
    )


def assert_same(a, b):
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v), k


@pytest.mark.parametrize('scm', ['chain-lin', 'collider-lin'])
def test_a_seed_is_the_same_model_alone_or_stacked_at_the_papers_epochs(scm):
    # the paper's algorithm (the default recipe) at the paper's full epochs for this SCM (Table 5)
    pools, clf, flow = quick_models(scm)
    hp = {'epochs': carma_hparams(scm)['epochs']}
    options = CarmaOptions(hparams=hp, cache=False, verbose=False)
    alone = train_carma_seeds(scm, clf, flow, pools.recourse, [2], options)[0]
    stacked = train_carma_seeds(scm, clf, flow, pools.recourse, [7, 2, 0], options)[1]
    assert alone.hp['epochs'] == carma_hparams(scm)['epochs'] >= 150
    assert_same(alone, stacked)


def test_dice_vae_seed_is_the_same_model_alone_or_stacked():
    pools, clf, _ = quick_models('chain-lin')
    alone = train_dice_vae(
        'chain-lin', clf, pools.recourse, 3, hparams={'epochs': 20}, cache=False, verbose=False
    )
    options = TrainOptions(hparams={'epochs': 20}, cache=False, verbose=False)
    stacked = train_dice_vae_seeds('chain-lin', clf, pools.recourse, [1, 3], options)[1]
    assert_same(alone, stacked)


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp('damaged')
    pools = make_pools('loan', 0, SMALL)
    clf = train_classifier('loan', pools.classifier, fit=ClassifierFit(epochs=5), cache=False, verbose=False)
    flow = fit_flow('loan', pools.causal, fit=FlowFit(epochs=5, batch=1000), cache=False, verbose=False)
    m = train_carma('loan', clf, flow, pools.recourse, hparams={'epochs': 3}, cache=False, verbose=False)
    return save_carma(m, d / 'carma.pt'), d


def _damage(saved, edit_sd=lambda sd: sd, edit_cfg=lambda c: c):
    path, d = saved
    ck = load_checkpoint(path)
    bad = d / 'bad.pt'
    save_checkpoint(bad, edit_sd(dict(ck.state_dict)), edit_cfg(dict(ck.config)))
    return bad


@pytest.mark.parametrize(
    'edit_sd, edit_cfg, message',
    [
        (
            lambda sd: {k: v for k, v in sd.items() if k != 'action_net.0.weight'},
            None,
            r"missing tensors \['action_net.0.weight'\]",
        ),
        (
            lambda sd: {**sd, 'action_net.0.weight': sd['action_net.0.weight'] * float('nan')},
            None,
            "'action_net.0.weight' holds NaN",
        ),
        (
            lambda sd: {**sd, 'mask_net.0.bias': torch.full_like(sd['mask_net.0.bias'], float('inf'))},
            None,
            'holds NaN or inf',
        ),
        (lambda sd: {k: v for k, v in sd.items() if k != 'causal_model.mean'}, None, 'scaler'),
        (
            lambda sd: {k: v for k, v in sd.items() if not k.startswith('clf.net.2')},
            None,
            r'\(clf\): missing tensors',
        ),
        (lambda sd: {**sd, 'mask_net.0.weight': sd['mask_net.0.weight'][:, :3]}, None, 'the model needs'),
        (lambda sd: {**sd, 'surprise': torch.ones(1)}, None, r"unexpected tensors \['surprise'\]"),
        (None, lambda c: {**c, 'causal_class': 'os.system'}, 'only carma_nb.flow.CausalFlow'),
        (None, lambda c: {**c, 'causal_class': 'carma_nb.experiments.main'}, 'only carma_nb.flow.CausalFlow'),
        (None, lambda c: {k: v for k, v in c.items() if k != 'causal_hidden'}, 'lacks'),
    ],
)
def test_damaged_model_files_are_refused_naming_the_file(saved, edit_sd, edit_cfg, message):
    bad = _damage(saved, edit_sd or (lambda sd: sd), edit_cfg or (lambda c: c))
    with pytest.raises(ValueError, match=message) as e:
        load_carma(bad)
    assert 'bad.pt' in str(e.value)


def test_the_intact_file_still_loads(saved):
    path, _ = saved
    assert load_carma(path, 'loan').scm == 'loan'


BAD_SETTINGS = [
    (
        lambda p, c, f: train_carma('loan', c, f, p.recourse, hparams={'epochs': 2.5}, cache=False),
        'epochs must be a whole number',
    ),
    (
        lambda p, c, f: train_carma('loan', c, f, p.recourse, hparams={'epochs': '5'}, cache=False),
        'epochs must be a whole number',
    ),
    (
        lambda p, c, f: train_carma('loan', c, f, p.recourse, hparams={'lr': float('inf')}, cache=False),
        'lr must be a finite number > 0',
    ),
    (
        lambda p, c, f: train_carma('loan', c, f, p.recourse, hparams={'mask_hidden': [0]}, cache=False),
        'mask_hidden must be a whole',
    ),
    (
        lambda p, c, f: train_carma('loan', c, f, p.recourse, seed=-1, cache=False),
        'must be a whole number ≥ 0, got -1',
    ),
    (
        lambda p, c, f: train_classifier('loan', p.classifier, fit=ClassifierFit(epochs=2.5), cache=False),
        'epochs must be a whole number',
    ),
    (
        lambda p, c, f: train_classifier(
            'loan', p.classifier, fit=ClassifierFit(lr=float('nan')), cache=False
        ),
        'lr must be a finite number > 0',
    ),
    (
        lambda p, c, f: train_classifier('loan', p.classifier, seed=-1, cache=False),
        'seed must be a whole number ≥ 0',
    ),
    (
        lambda p, c, f: fit_flow('loan', p.causal, fit=FlowFit(hidden=[0]), cache=False),
        'hidden must be a whole number ≥ 1',
    ),
    (
        lambda p, c, f: fit_flow('loan', p.causal, fit=FlowFit(batch='4000'), cache=False),
        'batch must be a whole number',
    ),
    (lambda p, c, f: fit_vaca('loan', p.causal, seed=-1, cache=False), 'seed must be a whole number ≥ 0'),
    (
        lambda p, c, f: fit_vaca('loan', p.causal, fit=VacaFit(epochs=0.5), cache=False),
        'epochs must be a whole number',
    ),
    (
        lambda p, c, f: train_dice_vae('loan', c, p.recourse, hparams={'lr': float('inf')}, cache=False),
        'lr must be a finite number > 0',
    ),
    (
        lambda p, c, f: train_dice_vae('loan', c, p.recourse, hparams={'hidden': 2.5}, cache=False),
        'hidden must be a whole number',
    ),
    (
        lambda p, c, f: train_dice_vae('loan', c, p.recourse, seed=-2, cache=False),
        'must be a whole number ≥ 0',
    ),
    (
        lambda p, c, f: cached_oracle(recourse_problem('loan', p), c, p.recourse.test.x[:5], bins=2.7),
        'bins .* must be a whole number ≥ 2',
    ),
    (lambda p, c, f: make_pools('loan', seed=-1), 'seed must be a whole number ≥ 0'),
    (lambda p, c, f: make_pools('loan', seed=1.5), 'seed must be a whole number ≥ 0'),
]


@pytest.mark.parametrize('call, message', BAD_SETTINGS)
def test_bad_settings_are_refused_before_training(saved, call, message):
    path, _ = saved
    m = load_carma(path)
    pools = make_pools('loan', 0, SMALL)
    t = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        call(pools, m.clf, m.causal_model)
    assert time.perf_counter() - t < 2, 'refused only after training started'


def test_a_collapsed_training_says_so():
    pools, clf, flow = quick_models('chain-lin')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        m = train_carma(
            'chain-lin',
            clf,
            flow,
            pools.recourse,
            cache=False,
            verbose=False,
            hparams={'lr': 1e4, 'epochs': 3},
        )
    assert float(m.history['train_coverage']) < COLLAPSED
    assert [w for w in caught if issubclass(w.category, TrainingCollapsed) and 'seed 0' in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ok = train_carma(
            'chain-lin', clf, flow, pools.recourse, cache=False, verbose=False, hparams={'epochs': 10}
        )
    assert float(ok.history['train_coverage']) >= COLLAPSED and not [
        w for w in caught if w.category is TrainingCollapsed
    ]


def test_reproduce_seeds_reach_the_workers_and_key_the_results(tmp_path, monkeypatch):
    # two worker processes, as `carma-nb reproduce` runs by default; the workers used to reload the stock profile
    from carma_nb.experiments import main
    import pandas as pd

    for name in ('CARMA_FIGURE_DIR', 'CARMA_PROFILE'):  # the command sets them for its process: undone after
        monkeypatch.setenv(name, os.environ.get(name, ''))

    args = [
        'reproduce',
        '--profile',
        'quick',
        '--scm',
        'chain-lin',
        '--jobs',
        '2',
        '--out',
        str(tmp_path),
        '--no-notebooks',
    ]
    assert main([*args, '--seeds', '1']) == 0
    one = pd.read_csv(tmp_path / 'results_quick.csv')
    assert main([*args, '--seeds', '3']) == 0
    three = pd.read_csv(tmp_path / 'results_quick.csv')
    for method in ('carma', 'dice-vae'):
        assert (one['method'] == method).sum() == 1 and (three['method'] == method).sum() == 3, method
    assert sorted(three.loc[three['method'] == 'carma', 'seed']) == [0, 1, 2]
    # seed 0 is the same model whether trained as one of one or one of three
    c1, c3 = (df[(df['method'] == 'carma') & (df['seed'] == 0)].iloc[0] for df in (one, three))
    assert c1['cost x100'] == c3['cost x100'] and c1['acts'] == c3['acts']
    assert len(list((tmp_path / 'jobs' / 'quick').glob('chain-lin__carma__*.json'))) == 2


def test_carma_options_are_checked_before_anything_is_trained():
    # no classifier or flow is needed: the options are refused first, each with what to do instead
    for options, msg in [
        ({'epochs': 3}, r"unknown option\(s\) \['epochs'\].*hyperparameters go in hparams"),
        ('improved', 'options must be a CarmaOptions'),
        (TrainOptions(profile='quick'), 'options must be a CarmaOptions'),
        (CarmaOptions(hparams=[3]), 'hparams must be a dict'),
    ]:
        with pytest.raises(TypeError, match=msg):
            train_carma_seeds('loan', None, None, None, [0], options)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['lr'\]"):
        train_carma('loan', None, None, lr=1e-3)
