"""A world from a table and a graph file (chapter 16, issue 22): every bad graph file and every bad table
gets one clear error naming the feature (or column and row) and the fix; a good one builds a world."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from carma_nb.scm import get_scm
from carma_nb.world import graph_of_scm, load_graph, parse_graph, world_from_table

GOOD = {
    'label': 'approved',
    'features': [
        {'name': 'gender', 'parents': [], 'type': 'binary', 'role': 'immutable'},
        {'name': 'age', 'parents': [], 'type': 'continuous', 'role': 'immutable'},
        {
            'name': 'checking',
            'parents': ['age'],
            'type': 'ordinal',
            'levels': [0, 1, 2, 3],
            'role': 'actionable',
        },
        {'name': 'duration', 'parents': ['amount'], 'type': 'integer', 'role': 'mutable', 'bounds': [1, 72]},
        {
            'name': 'amount',
            'parents': ['gender', 'age'],
            'type': 'continuous',
            'role': 'actionable',
            'direction': 'decrease',
        },
    ],
}


def edit(**changes):
    "GOOD with some features' keys changed (None deletes a key)."
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for f in spec['features']:
        for k, v in changes.get(f['name'], {}).items():
            f.pop(k) if v is None else f.__setitem__(k, v)
    return spec


GRAPH_CASES = {
    'a cycle': (edit(age={'parents': ['duration']}), 'cycle age → amount → duration → age'),
    'an unknown parent': (
        edit(amount={'parents': ['income']}),
        "feature 'amount' has unknown parents ['income']",
    ),
    'the label as a parent': (edit(amount={'parents': ['approved']}), 'the label cannot be a parent'),
    'a bad type': (edit(age={'type': 'float'}), "feature 'age': type must be one of"),
    'a bad role': (edit(age={'role': 'fixed'}), "feature 'age': role must be one of"),
    'an ordinal without levels': (edit(checking={'levels': None}), 'an ordinal feature needs levels'),
    'levels not increasing': (edit(checking={'levels': [0, 2, 1]}), 'levels must be two or more increasing'),
    'bounds the wrong way round': (edit(duration={'bounds': [72, 1]}), 'bounds must be [low, high]'),
    'a direction on an immutable feature': (edit(age={'direction': 'increase'}), 'only on an actionable'),
    'a misspelt key': (edit(age={'parent': []}), "unknown keys ['parent']"),
    'a duplicate name': ({**GOOD, 'features': GOOD['features'] + [GOOD['features'][0]]}, 'more than once'),
    'no label': ({'features': GOOD['features']}, 'needs exactly two keys, label and features'),
    'nothing actionable': (
        edit(checking={'role': 'mutable'}, amount={'role': 'mutable', 'direction': None}),
        'no feature is actionable',
    ),
}


@pytest.mark.parametrize('spec, message', GRAPH_CASES.values(), ids=GRAPH_CASES.keys())
def test_bad_graph_files(tmp_path, spec, message):
    (tmp_path / 'g.yaml').write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
        load_graph(tmp_path / 'g.yaml')


def test_a_graph_file_that_is_not_yaml(tmp_path):
    (tmp_path / 'g.yaml').write_text('label: [unclosed\n')
    with pytest.raises(ValueError, match='not a readable YAML file'):
        load_graph(tmp_path / 'g.yaml')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_graph(tmp_path / 'none.yaml')


def test_the_order_is_topological():
    g = parse_graph(GOOD)
    assert g.names == ('gender', 'age', 'checking', 'amount', 'duration')
    assert g.features[3].direction == 'decrease' and g.features[4].bounds == (1.0, 72.0)


def table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            'gender': rng.integers(0, 2, n),
            'age': rng.normal(40, 10, n),
            'checking': rng.integers(0, 4, n),
            'amount': rng.normal(5, 1, n),
            'duration': rng.integers(1, 73, n),
            'approved': rng.integers(0, 2, n),
        }
    )


def set_value(col, row, value):
    def change(df):
        df = df.astype({col: object})  # any value fits
        df.loc[row, col] = value
        return df

    return change


TABLE_CASES = {
    'a missing column': (lambda df: df.drop(columns='age'), "columns ['age'] of the graph are missing"),
    'the label missing': (lambda df: df.drop(columns='approved'), "columns ['approved']"),
    'an ordinal value outside its levels': (
        set_value('checking', 5, 7),
        "'checking', data row 6: 7 is not one",
    ),
    'a binary value of 2': (
        set_value('gender', 0, 2),
        "'gender', data row 1: 2 is not one of its levels [0.0, 1.0]",
    ),
    'a fraction in an integer column': (
        set_value('duration', 3, 2.5),
        'data row 4: 2.5 is not a whole number',
    ),
    'a value outside its bounds': (
        set_value('duration', 9, 80),
        'data row 10: 80 is outside its bounds [1.0, 72.0]',
    ),
    'text': (set_value('age', 2, 'old'), "'age', data row 3: 'old' is not a finite number"),
    'a missing value': (set_value('amount', 4, math.nan), "'amount', data row 5: nan is not a finite number"),
    'a label of 2': (set_value('approved', 1, 2), "label column 'approved', data row 2: 2; labels must be 1"),
    'too few rows': (lambda df: df.head(10), '10 rows; a world needs at least 50'),
    'one outcome only': (lambda df: df.assign(approved=1), 'every label is 1; a classifier needs both'),
}


@pytest.mark.parametrize('change, message', TABLE_CASES.values(), ids=TABLE_CASES.keys())
def test_bad_tables(change, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]').replace('.', r'\.')):
        world_from_table(change(table()), parse_graph(GOOD, 'the graph'), 'test-world')


def test_a_world_from_a_good_table():
    w = world_from_table(table(), parse_graph(GOOD), 'test-world')
    assert get_scm('test-world') is w.scm and w.scm.names == (
        'gender',
        'age',
        'checking',
        'amount',
        'duration',
    )
    assert w.scm.actionable == [2, 3] and w.scm.binary == [0]
    assert [len(getattr(w.pools.causal, s)) for s in ('train', 'val', 'test')] == [140, 20, 40]
    assert torch.isnan(w.pools.recourse.train.u).all()  # no noise: no equations
    with pytest.raises(NotImplementedError, match='no structural equations'):
        w.scm.sample(3)
    again = world_from_table(table(seed=1), parse_graph(GOOD), 'test-world')  # the same name is replaced
    assert get_scm('test-world') is again.scm
    with pytest.raises(ValueError, match='names an SCM with equations'):
        world_from_table(table(), parse_graph(graph_of_scm('loan', 'approved')), 'loan')


def test_float32_values_of_levels_and_bounds_are_inside():
    "A model serves float32: its 0.7 is not float64's 0.7, yet it is that level (and 0.1 that bound)."
    from carma_nb.recourse import feature_domain, outside_domain
    from carma_nb.world import register_world

    spec = {
        'label': 'y',
        'features': [
            {'name': 's', 'parents': [], 'type': 'ordinal', 'levels': [0, 0.1, 0.7], 'role': 'actionable'},
            {'name': 'r', 'parents': [], 'type': 'continuous', 'role': 'actionable', 'bounds': [0, 0.1]},
        ],
    }
    scm = register_world(parse_graph(spec), 'levels-world')
    dom = feature_domain(scm, torch.tensor([[0.0, 0.0], [0.7, 0.1]]))
    x32 = torch.tensor([[0.7, 0.1], [0.1, 0.0]], dtype=torch.float32)
    assert not outside_domain(dom, x32).any() and not outside_domain(dom, x32.double()).any()
    assert outside_domain(dom, torch.tensor([[0.5, 0.05]])).tolist() == [[True, False]]


def test_a_name_holds_one_graph_per_process():
    world_from_table(table(), parse_graph(GOOD), 'one-graph')
    other = edit(amount={'direction': None})
    with pytest.raises(ValueError, match="a world 'one-graph' of another graph is registered"):
        world_from_table(table(), parse_graph(other), 'one-graph')
