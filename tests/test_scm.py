"""Exactness and property tests of the seven SCMs against an independent transcription of the paper's.

The reference below is written in NumPy, straight from the equations of the paper's SCMs (its appendix;
chapter 1 lists them), without importing any equation from carma_nb: if either side drifts from the
paper's equations the two disagree.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from carma_nb.scm import SCM_NAMES, get_scm, register_scm, SCM, additive, gamma, mixture_u1, normal

sig = lambda t: 1 / (1 + np.exp(-t))


# ---- the paper's equations, transcribed: u (n, D) -> x (n, D) --------------------------------------
def ref_generate(name, u, mask=None, vals=None):
    """x from u by the paper's equations; with mask/vals, node j is set to vals[:, j] where mask[:, j]."""
    if mask is None:
        mask, vals = np.zeros(u.shape, bool), np.zeros(u.shape)
    do = lambda j, v: np.where(mask[:, j], vals[:, j], v)
    if name == 'loan':
        uG, uA, uE, uL, uD, uI, uS = u.T
        G = do(0, uG)
        A = do(1, -35 + uA)
        E = do(2, -0.5 + sig(-1 + 0.5 * G + sig(0.1 * A) + uE))
        L = do(3, 1 + 0.01 * (A - 5) * (5 - A) + (1 - G) + uL)
        D = do(4, -1 + 0.1 * A + 2 * (1 - G) + L + uD)
        I = do(5, -4 + 0.1 * (A + 35) + 2 * G + G * E + uI)
        S = do(6, -4 + 1.5 * (I > 0) * I + uS)
        return np.stack([G, A, E, L, D, I, S], 1)
    us, u1, u2, u3 = u.T
    xs = do(0, us)
    if name == 'triangle-lin':
        x1 = do(1, xs + u1)
        x2 = do(2, x1 + u2)
        x3 = do(3, xs + 0.25 * x1 + 0.5 * x2 + u3)
    elif name == 'triangle-nlin':
        x1 = do(1, xs + u1)
        x2 = do(2, -1 + 3 * sig(2 * x1) + u2)
        x3 = do(3, xs + 0.25 * x1**2 + 0.5 * x2 + u3)
    elif name == 'collider-lin':
        x1 = do(1, xs + u1)
        x2 = do(2, 0.5 * xs + u2)
        x3 = do(3, 0.05 * xs + 0.25 * x1 + 0.25 * x2 + u3)
    elif name == 'collider-nlin':
        x1 = do(1, 0.5 * xs + u1)
        x2 = do(2, 0.5 * xs + u2)
        x3 = do(3, 0.25 * xs + 0.25 * x1**2 + 0.25 * x2**2 + u3)
    elif name == 'chain-lin':
        x1 = do(1, xs + u1)
        x2 = do(2, xs + 0.5 * x1 + u2)
        x3 = do(3, 0.25 * xs + 0.5 * x2 + u3)
    elif name == 'chain-nlin':
        x1 = do(1, xs + u1)
        x2 = do(2, xs + 3 * sig(2 * x1) + u2)
        x3 = do(3, 0.25 * xs + x2**2 + u3)
    return np.stack([xs, x1, x2, x3], 1)


def ref_label(name, x, u):
    if name == 'loan':
        L, D, I, S = x[:, 3], x[:, 4], x[:, 5], x[:, 6]
        alpha = np.where((I >= 0) & (S >= 0), 1.0, -1.0)
        return (0.3 * (-L - D + I + S + alpha * I * S) >= 0).astype(int)
    x1, x2, x3, u1 = x[:, 1], x[:, 2], x[:, 3], u[:, 1]
    if name in ('triangle-lin', 'collider-lin', 'chain-lin'):
        g = x1 + 0.5 * x2 + x3 + 0.5 * u1
    elif name == 'triangle-nlin':
        g = -1 + 2**x1 + 0.75 * x2 ** (-3.0) + 0.1 * x3**2 + 0.5 * u1
    elif name == 'collider-nlin':
        g = x1**3 + x2 + 3 * x3 + 0.5 * u1
    elif name == 'chain-nlin':
        g = x1**3 + x2 + 0.75 * np.exp(x3) + 0.5 * u1 - 50
    return (g >= 0).astype(int)


REF_PARENTS = {
    'triangle': {0: [], 1: [0], 2: [1], 3: [0, 1, 2]},
    'collider': {0: [], 1: [0], 2: [0], 3: [0, 1, 2]},
    'chain': {0: [], 1: [0], 2: [0, 1], 3: [0, 2]},
    'loan': {0: [], 1: [], 2: [0, 1], 3: [0, 1], 4: [0, 1, 3], 5: [0, 1, 2], 6: [5]},
}


def random_noise(name, n, seed):
    """Broad noise (not the paper's distributions) so every branch of every equation is exercised."""
    rng = np.random.default_rng(seed)
    D = get_scm(name).n_features
    u = rng.normal(0, 2, (n, D))
    u[:, 0] = rng.integers(0, 2, n)
    if name == 'loan':
        u[:, 1] = rng.gamma(10, 3.5, n)
    return u


@pytest.mark.parametrize('name', SCM_NAMES)
def test_equations_match_spec(name):
    u = random_noise(name, 5000, 1)
    x = get_scm(name).generate(torch.tensor(u, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(x, ref_generate(name, u), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', SCM_NAMES)
def test_labels_match_spec(name):
    scm = get_scm(name)
    u = scm.sample_noise(20000, 2, torch.float64)
    x = scm.generate(u)
    np.testing.assert_array_equal(scm.label(x, u).numpy(), ref_label(name, x.numpy(), u.numpy()))


@pytest.mark.parametrize('name', SCM_NAMES)
def test_graph_and_roles_match_spec(name):
    scm = get_scm(name)
    family = 'loan' if name == 'loan' else name.split('-')[0]
    for i, pa in REF_PARENTS[family].items():
        assert scm.parents(i) == pa
        assert scm.adjacency[i].nonzero().flatten().tolist() == pa
    assert torch.all(scm.adjacency.diagonal() == 0)
    if name == 'loan':
        assert scm.names == ('gender', 'age', 'education', 'loan_amount', 'duration', 'income', 'savings')
        assert scm.immutable == [0, 1] and scm.actionable == [2, 3, 5, 6] and scm.mutable == [2, 3, 4, 5, 6]
    else:
        assert scm.names == ('x_s', 'x1', 'x2', 'x3')
        assert scm.immutable == [0] and scm.actionable == [1, 2, 3]


@pytest.mark.parametrize('name', SCM_NAMES)
def test_noise_distributions_match_spec(name):
    scm = get_scm(name)
    u = scm.sample_noise(400_000, 0, torch.float64).numpy()
    assert set(np.unique(u[:, 0])) == {0.0, 1.0} and abs(u[:, 0].mean() - 0.5) < 0.01
    if name == 'loan':
        # Gamma(10, scale 3.5): mean 35, var 122.5; then N(0, std 0.5, 2, 3, 2, 5)
        assert abs(u[:, 1].mean() - 35) < 0.1 and abs(u[:, 1].var() - 122.5) < 2
        for j, std in zip(range(2, 7), (0.5, 2, 3, 2, 5)):
            assert abs(u[:, j].mean()) < 0.03 * std and abs(u[:, j].std() - std) < 0.01 * std
    else:
        # mixture ½N(−2, var 1.5) + ½N(1.5, var 1): mean −0.25, var 4.3125; u2 var 0.1 for two SCMs
        assert abs(u[:, 1].mean() + 0.25) < 0.02 and abs(u[:, 1].var() - 4.3125) < 0.04
        var2 = 0.1 if name in ('triangle-nlin', 'collider-nlin') else 1.0
        assert abs(u[:, 2].var() - var2) < 0.01 * var2 * 3 and abs(u[:, 3].var() - 1) < 0.015


def test_noise_samplers():
    rng = np.random.default_rng(0)
    draws = mixture_u1(rng, 400_000)
    assert abs(draws.mean() + 0.25) < 0.02  # ½(−2) + ½(1.5)
    assert abs(draws.var() - (0.5 * (1.5 + 4) + 0.5 * (1 + 2.25) - 0.25**2)) < 0.03  # mixture variance 4.3125
    assert abs(gamma(10, 3.5)(rng, 400_000).mean() - 35) < 0.05


def test_registry_names_descendants_and_depths():
    assert SCM_NAMES == (
        'triangle-lin',
        'triangle-nlin',
        'collider-lin',
        'collider-nlin',
        'chain-lin',
        'chain-nlin',
        'loan',
    )
    with pytest.raises(ValueError, match='valid names: triangle-lin'):
        get_scm('triangle')
    with pytest.raises(ValueError, match="did you mean 'loan'"):
        get_scm('lone')
    loan = get_scm('loan')
    assert [loan.names[i] for i in loan.actionable] == ['education', 'loan_amount', 'income', 'savings']
    assert [loan.names[i] for i in loan.immutable] == ['gender', 'age']
    assert loan.adjacency[4].nonzero().flatten().tolist() == [0, 1, 3]  # duration <- gender, age, loan_amount
    assert loan.descendants('education') == [5, 6]  # income, savings
    assert loan.descendants('gender') == [2, 3, 4, 5, 6]
    assert {n: get_scm(n).depth for n in SCM_NAMES} == {
        'triangle-lin': 3,
        'triangle-nlin': 3,
        'collider-lin': 2,
        'collider-nlin': 2,
        'chain-lin': 3,
        'chain-nlin': 3,
        'loan': 3,
    }


def test_kinds_and_bounds():
    "Only the binary sensitive attributes (gender, x_s) are binary; only loan's education is bounded."
    binary = {n: [get_scm(n).names[i] for i in get_scm(n).binary] for n in ('loan', 'chain-lin')}
    assert binary == {'loan': ['gender'], 'chain-lin': ['x_s']}
    loan = get_scm('loan')
    assert loan.bounds[:, loan.index('education')].tolist() == [-0.5, 0.5]
    assert not torch.isfinite(torch.stack([get_scm(n).bounds for n in SCM_NAMES if n != 'loan'])).any()
    one = lambda **kw: SCM('w', [additive('a', (), lambda x: 0.0, normal(0, 1), **kw)], lambda x, u: x[0] > 0)
    with pytest.raises(ValueError, match='kind must be one of'):
        one(kind='real')
    with pytest.raises(ValueError, match='an ordinal node needs its levels'):
        one(kind='ordinal')
    with pytest.raises(ValueError, match='low < high'):
        one(bounds=(1, 0))
    with pytest.raises(ValueError, match='must contain 0 and 1'):
        one(kind='binary', bounds=(0, 1))
    assert one().bounds.tolist() == [[-math.inf], [math.inf]]  # a world of one's own: unbounded by default


@pytest.mark.parametrize('name', SCM_NAMES)
def test_every_sample_lies_within_what_its_nodes_declare(name):
    scm = get_scm(name)
    x = scm.sample(2000, seed=1)[0].double()
    assert ((x > scm.bounds[0]) & (x < scm.bounds[1])).all()
    assert ((x[:, scm.binary] == 0) | (x[:, scm.binary] == 1)).all()


@pytest.mark.parametrize('name', SCM_NAMES)
def test_abduct_inverts_generate_in_float64_and_float32(name):
    scm = get_scm(name)
    u = scm.sample_noise(2000, generator=1, dtype=torch.float64)
    torch.testing.assert_close(scm.abduct(scm.generate(u)), u, atol=1e-9, rtol=0)
    u32 = u.float()
    torch.testing.assert_close(scm.abduct(scm.generate(u32)), u32, atol=2e-3, rtol=0)


# ---- properties (hypothesis) --------------------------------------------------------------------
names = st.sampled_from(SCM_NAMES)


@st.composite
def person_and_action(draw, n_actions=st.integers(1, 8)):
    name = draw(names)
    scm = get_scm(name)
    m = draw(n_actions)
    seed = draw(st.integers(0, 2**31))
    x = scm.generate(scm.sample_noise(1, seed, torch.float64))
    mask = torch.tensor(draw(arrays(np.bool_, (m, scm.n_features))))
    vals = torch.tensor(draw(arrays(np.float64, (m, scm.n_features), elements=st.floats(-3, 3))))
    if name == 'loan':
        vals[:, 2] = vals[:, 2] / 7  # education lives in (−0.5, 0.5)
    return scm, x, mask, vals


@settings(max_examples=150, deadline=None)
@given(names, st.integers(0, 2**31), st.sampled_from([torch.float32, torch.float64]))
def test_abduct_inverts_generate(name, seed, dtype):
    scm = get_scm(name)
    u = scm.sample_noise(64, seed, torch.float64)
    tol = 1e-9 if dtype == torch.float64 else 5e-3
    torch.testing.assert_close(scm.abduct(scm.generate(u.to(dtype))).double(), u, atol=tol, rtol=tol)


@settings(max_examples=150, deadline=None)
@given(person_and_action())
def test_counterfactual_properties(case):
    scm, x, mask, vals = case
    cf = scm.counterfactual(x, mask, vals)
    assert cf.shape == mask.shape
    # intervened features take exactly their values
    assert torch.equal(cf[mask], vals[mask])
    for r in range(len(mask)):
        I = mask[r].nonzero().flatten().tolist()
        affected = set(I).union(*[scm.descendants(i) for i in I]) if I else set()
        # non-descendants of the intervened set never move (bit for bit)
        for j in range(scm.n_features):
            if j not in affected:
                assert cf[r, j] == x[0, j]
        # an empty mask returns the factual
        if not I:
            assert torch.equal(cf[r], x[0])


@settings(max_examples=100, deadline=None)
@given(person_and_action())
def test_counterfactual_matches_reference(case):
    """Counterfactual = the paper's equations rerun with the person's own noise and the intervened nodes set."""
    scm, x, mask, vals = case
    cf = scm.counterfactual(x, mask, vals).numpy()
    u = scm.abduct(x).numpy().repeat(len(mask), 0)
    ref = ref_generate(scm.name, u, mask.numpy(), vals.numpy())
    np.testing.assert_allclose(cf, ref, rtol=1e-9, atol=1e-9)


def test_one_person_many_actions_broadcasts_in_both_dtypes():
    scm = get_scm('loan')
    for dtype in (torch.float32, torch.float64):
        x = scm.generate(scm.sample_noise(1, 0, dtype))
        mask = torch.zeros(1000, 7, dtype=torch.bool)
        mask[:, 5] = True
        vals = x.expand(1000, 7).clone()
        vals[:, 5] = torch.linspace(-5, 5, 1000, dtype=dtype)
        cf = scm.counterfactual(x, mask, vals)
        assert cf.dtype == dtype and cf.shape == (1000, 7)
        many = scm.counterfactual(x.expand(1000, 7), mask, vals)
        torch.testing.assert_close(cf, many, rtol=0, atol=0)


# ---- bad input ----------------------------------------------------------------------------------
def test_unknown_scm_lists_valid_names():
    with pytest.raises(ValueError, match='valid names: triangle-lin, triangle-nlin.*loan'):
        get_scm('triangel')


@pytest.mark.parametrize(
    'bad, err, msg',
    [
        (lambda s, x, m, v: s.counterfactual(x[:, :5], m, v), ValueError, '5 columns but 7 features'),
        (lambda s, x, m, v: s.counterfactual(torch.zeros(2, 4), m[:2], v[:2]), ValueError, '4 columns but 7'),
        (lambda s, x, m, v: s.counterfactual(x, m.float(), v), TypeError, 'mask must be a boolean'),
        (
            lambda s, x, m, v: s.counterfactual(
                x.expand(2, 7) * torch.tensor([[1.0], [math.nan]]), m[:2], v[:2]
            ),
            ValueError,
            'NaN or inf',
        ),
        (lambda s, x, m, v: s.counterfactual(x, m[0], torch.full((7,), math.inf)), ValueError, 'intervened'),
        (
            lambda s, x, m, v: s.abduct(torch.tensor([[0.0, 0.0, 0.7, 0.0, 0.0, 0.0, 0.0]])),
            ValueError,
            "'education'",
        ),
        (lambda s, x, m, v: s.counterfactual(x * float('nan'), m, v), ValueError, 'NaN or inf'),
        (lambda s, x, m, v: s.counterfactual(x * float('inf'), m, v), ValueError, 'NaN or inf'),
        (lambda s, x, m, v: s.counterfactual(x, m.int(), v), TypeError, 'mask must be a boolean'),
        (lambda s, x, m, v: s.counterfactual(x.expand(3, 7), m[:2], v[:2]), ValueError, 'do not broadcast'),
        (lambda s, x, m, v: s.counterfactual(x, m[:, :3], v), ValueError, 'mask must have shape'),
        (lambda s, x, m, v: s.counterfactual(x, m, v[:, :6]), ValueError, 'values must have shape'),
        (lambda s, x, m, v: s.counterfactual(x, m, v * float('nan')), ValueError, 'intervened position'),
        (lambda s, x, m, v: s.generate(torch.zeros(2, 3)), ValueError, '3 columns but 7'),
        (lambda s, x, m, v: s.sample_noise(-1), ValueError, 'non-negative integer'),
        (
            lambda s, x, m, v: s.sample_noise(3, generator=torch.Generator()),
            TypeError,
            'numpy.random.Generator',
        ),
        (lambda s, x, m, v: s.descendants('salary'), ValueError, "no feature 'salary'"),
        (
            lambda s, x, m, v: s.abduct(torch.tensor([[0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]])),
            ValueError,
            "'education'",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(bad, err, msg):
    s = get_scm('loan')
    x = s.generate(s.sample_noise(1, 0))
    m = torch.zeros(4, 7, dtype=torch.bool)
    m[:, 5] = True
    v = x.expand(4, 7).clone()
    with pytest.raises(err, match=msg):
        bad(s, x, m, v)


def test_register_new_scm_and_topological_order_check():
    nodes = [
        additive('a', (), lambda x: 0.0, normal(0, 1)),
        additive('b', (0,), lambda x: 2 * x[0], normal(0, 1)),
    ]
    register_scm('toy-pair', lambda: SCM('toy-pair', nodes, lambda x, u: x[1] > 0))
    toy = get_scm('toy-pair')
    x, u, y = toy.sample(10, seed=0)
    torch.testing.assert_close(x[:, 1], 2 * x[:, 0] + u[:, 1])
    with pytest.raises(ValueError, match='already registered; pass replace=True'):
        register_scm('toy-pair', lambda: toy)
    flipped = [nodes[0], additive('b', (0,), lambda x: -x[0], normal(0, 1))]
    register_scm('toy-pair', lambda: SCM('toy-pair', flipped, lambda x, u: x[1] > 0), replace=True)
    x, u, y = get_scm('toy-pair').sample(5, seed=0)  # redefined: get_scm builds the new one
    torch.testing.assert_close(x[:, 1], -x[:, 0] + u[:, 1])
    with pytest.raises(ValueError, match="one of the paper's SCMs"):
        register_scm('loan', lambda: toy, replace=True)
    with pytest.raises(ValueError, match='topological order'):
        SCM(
            'bad',
            [
                additive('a', (1,), lambda x: x[1], normal(0, 1)),
                additive('b', (), lambda x: 0.0, normal(0, 1)),
            ],
            lambda x, u: x[0] > 0,
        )
