"""From a table and a graph to a served model file (chapter 18, issue 22 item 5): `carma-nb fit` and
`carma-nb recommend` without --scm, their errors, and the world model file's own checks."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from carma_nb.carma import load_carma
from carma_nb.core import load_checkpoint, save_checkpoint
from carma_nb.experiments import main
from carma_nb.fitting import load_world_model

GRAPH = {
    'label': 'approved',
    'features': [
        {'name': 'age', 'parents': [], 'type': 'continuous', 'role': 'immutable'},
        {
            'name': 'checking',
            'parents': ['age'],
            'type': 'ordinal',
            'levels': [0, 1, 2, 3],
            'role': 'actionable',
            'direction': 'increase',
        },
        {
            'name': 'amount',
            'parents': ['age'],
            'type': 'continuous',
            'role': 'actionable',
            'bounds': [1, 20],
            'direction': 'decrease',
        },
        {'name': 'duration', 'parents': ['amount'], 'type': 'integer', 'role': 'mutable', 'bounds': [1, 72]},
    ],
}


def people(n, seed):
    "A small world with a known rule: a smaller loan, a fuller account and an older age are approved."
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    checking = np.clip(np.round((age - 40) / 10 + rng.normal(1.5, 1, n)), 0, 3)
    amount = np.clip(5 + 0.05 * age + rng.normal(0, 2, n), 1, 20)
    duration = np.clip(np.round(3 * amount + rng.normal(0, 4, n)), 1, 72)
    score = 0.8 * checking - 0.6 * amount + 0.03 * age + rng.logistic(0, 0.5, n)
    return pd.DataFrame(
        {
            'age': age,
            'checking': checking,
            'amount': amount,
            'duration': duration,
            'approved': (score > -3).astype(int),
        }
    )


@pytest.fixture(scope='module')
def fitted(tmp_path_factory):
    "`carma-nb fit` at the quick profile on 3 000 rows, into a cache of its own."
    d = tmp_path_factory.mktemp('fit')
    mp = pytest.MonkeyPatch()
    mp.setenv('CARMA_CACHE', str(d / 'cache'))
    mp.setenv('CARMA_QUIET', '1')
    people(3000, 0).to_csv(d / 'bank.csv', index=False)
    (d / 'graph.yaml').write_text(yaml.safe_dump(GRAPH))
    rc = main(
        ['fit', '--data', str(d / 'bank.csv'), '--graph', str(d / 'graph.yaml'), '--out', str(d / 'model.pt')]
    )
    yield d, rc
    mp.undo()


def test_fit_writes_one_self_contained_model(fitted, capsys):
    d, rc = fitted
    assert rc == 0 and (d / 'model.pt').is_file()
    model = load_world_model(d / 'model.pt')
    assert model.scm == 'bank' and model.names == ('age', 'checking', 'amount', 'duration')
    assert {'coverage', 'cross-flow validity', 'classifier test accuracy'} <= set(model.report)
    assert model.report['coverage'] > 0.5


def test_recommend_serves_valid_values_without_scm(fitted, capsys):
    d, _ = fitted
    applicants = people(500, 1).drop(columns='approved')
    applicants.to_csv(d / 'applicants.csv', index=False)
    assert (
        main(
            [
                'recommend',
                '--model',
                str(d / 'model.pt'),
                '--input',
                str(d / 'applicants.csv'),
                '--output',
                str(d / 'actions.csv'),
            ]
        )
        == 0
    )
    out = pd.read_csv(d / 'actions.csv')
    served = out[out.status == 'served']
    assert len(served) > 20
    acted = served[served.act_checking]
    assert acted.checking_target.isin([0, 1, 2, 3]).all()  # a level
    assert (acted.checking_target > acted.checking).all()  # only raised
    acted = served[served.act_amount]
    assert (acted.amount_target < acted.amount).all() and (acted.amount_target >= 1).all()
    assert set(out.columns) >= {'act_checking', 'act_amount'} and 'act_age' not in out.columns


def test_a_world_model_is_served_as_one(fitted, capsys):
    d, _ = fitted
    args = ['recommend', '--model', str(d / 'model.pt'), '--input', str(d / 'applicants.csv')]
    assert main([*args, '--output', str(d / 'x.csv'), '--scm', 'bank']) == 2
    assert 'leave out --scm' in capsys.readouterr().err
    assert main([*args, '--output', str(d / 'model.pt')]) == 2  # never over the model file
    assert 'is the file' in capsys.readouterr().err and load_world_model(d / 'model.pt')
    with pytest.raises(ValueError, match="kind='carma-world-model' but kind='carma-model'"):
        load_carma(d / 'model.pt')  # a plain load would serve continuous values: refused


def test_off_type_applicants_are_refused(fitted, capsys):
    d, _ = fitted
    people(5, 3).drop(columns='approved').assign(
        checking=[0.5, 1, 2, 3, 1], duration=[10, 10.5, 10, 10, 10]
    ).to_csv(d / 'odd.csv', index=False)
    assert (
        main(
            [
                'recommend',
                '--model',
                str(d / 'model.pt'),
                '--input',
                str(d / 'odd.csv'),
                '--output',
                str(d / 'o.csv'),
            ]
        )
        == 0
    )
    status = pd.read_csv(d / 'o.csv').status
    assert status[0].startswith('refused: checking 0.5') and 'one of its levels' in status[0]
    assert status[1].startswith('refused: duration 10.5') and 'a whole number' in status[1]
    assert not status[2:].str.startswith('refused').any()


def test_a_damaged_graph_in_the_model_file_is_refused(fitted):
    d, _ = fitted
    ck = load_checkpoint(d / 'model.pt')
    world = yaml.safe_load(yaml.safe_dump(ck.config['world']))
    world['graph']['features'][0]['parents'] = ['duration']  # age ← duration: a cycle
    save_checkpoint(d / 'cycle.pt', ck.state_dict, {**ck.config, 'world': world})
    with pytest.raises(ValueError, match=r'cycle.pt \(its graph\): the graph has a cycle'):
        load_world_model(d / 'cycle.pt')


@pytest.mark.parametrize(
    'args, message',
    [
        (['--data', 'missing.csv'], 'missing.csv'),
        (['--graph', 'cycle.yaml'], 'the graph has a cycle'),
        (['--name', 'loan'], "'loan' names an SCM with equations"),
        (['--out', '.'], 'is a folder'),
        (['--data', 'graph.yaml'], 'columns'),
        (['--data', 'model.pt'], 'not a readable CSV or Parquet file'),
        (['--seed', '-1'], 'seed must be'),
    ],
)
def test_fit_errors_are_one_line(fitted, capsys, monkeypatch, args, message):
    d, _ = fitted
    monkeypatch.chdir(d)
    spec = yaml.safe_load(yaml.safe_dump(GRAPH))
    spec['features'][0]['parents'] = ['duration']
    (d / 'cycle.yaml').write_text(yaml.safe_dump(spec))
    base = {'--data': 'bank.csv', '--graph': 'graph.yaml', '--out': 'new.pt'}
    base.update(dict(zip(args[::2], args[1::2])))
    assert main(['fit', *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1 and 'Traceback' not in err
    assert not (d / 'new.pt').exists()


def test_own_classifier_columns_in_any_order():
    from carma_nb.fitting import OwnClassifier
    from carma_nb.world import parse_graph, world_from_table

    world = world_from_table(people(600, 2), parse_graph(GRAPH), 'bank-own')
    lin = torch.nn.Linear(4, 1)
    module = torch.nn.Sequential(lin, torch.nn.Sigmoid())
    cols = ['duration', 'amount', 'checking', 'age']  # the module's own order
    clf = OwnClassifier(module, world, columns=cols)
    x = world.pools.classifier.test.x[:10]
    order = [world.graph.names.index(c) for c in cols]
    torch.testing.assert_close(clf.predict_proba(x), module(x[:, order])[:, 0].detach(), rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in module.parameters())  # frozen


def test_a_test_split_without_rejected_people_is_one_clear_error(fitted, capsys, monkeypatch):
    d, _ = fitted
    monkeypatch.chdir(d)
    t = people(300, 3)
    t.loc[np.random.default_rng(0).permutation(300)[240:], 'amount'] = 1.0  # the test rows (seed 0's split)
    t.assign(approved=(t.amount < 6).astype(int)).to_csv('tiny.csv', index=False)
    assert main(['fit', '--data', 'tiny.csv', '--graph', 'graph.yaml', '--out', 'tiny.pt']) == 2
    assert 'rejects none of the' in capsys.readouterr().err and not (d / 'tiny.pt').exists()
