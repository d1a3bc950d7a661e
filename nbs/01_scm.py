# %%
#| default_exp scm

# %% [markdown]
# # Structural causal models
#
# > The seven causal worlds of the paper, exactly: equations, noise, graphs, roles, labels and
# > counterfactuals by abduction–action–prediction.
#
# A **structural causal model** (SCM) says how each feature is produced from its causes. Every feature
# $x_j$ has a structural equation $x_j = f_j(x_{\mathrm{pa}(j)}, u_j)$: a function of its parents in a
# causal graph and of its own exogenous noise $u_j$ (everything about the person the model does not
# observe). The noises are independent: drawing $u$ and running the equations parents first generates
# a population.
#
# The same equations answer **counterfactual** questions about one person — *"what would your savings
# have been, had your income been higher?"* — in three steps (Pearl's abduction–action–prediction):
#
# 1. **Abduction**: recover the person's noise $u = f^{-1}(x)$ from their observed features. Every SCM
#    here is additive (or, for loan education, invertible) in its own noise, so this is exact.
# 2. **Action**: replace the intervened features' equations by constants, $do(x_{\mathcal I} = \theta)$.
# 3. **Prediction**: rerun the equations with the person's own noise: only descendants of $\mathcal I$ move.
#
# This is what makes recourse *causal*: a recommendation to raise income is evaluated with its
# consequences on savings, not as an edit of one column; the oracle (chapter 6) and every method's
# evaluation replay recommendations in these true SCMs. Here are the seven SCMs of the paper's
# experiments (its appendix; loan after Karimi et al., 2020) to the last coefficient; `tests/test_scm.py`
# checks each equation against an independent transcription of them.

# %%
#| export
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from carma_nb.core import as_features

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import matplotlib.pyplot as plt
import pandas as pd
from carma_nb.core import save_figure

# %% [markdown]
# ## A node: one structural equation and its inverse
#
# A `Node` holds what one feature needs: its parents, the equation `f(x, u)` that produces it, the
# inverse `f_inv(x, x_j)` that recovers its noise, a noise sampler, and its **role** for recourse:
# `immutable` (can never change: gender, age, the sensitive attribute $x_s$), `mutable` (changes only
# through its causes, never by direct action: loan duration) or `actionable` (a person can intervene on
# it directly).
#
# Equations receive `x` as a list of columns indexed by node (only parents are read), so one equation
# evaluates a whole batch of people at once. A node also declares the values its feature can take at
# all, which the feature domains of chapter 5 read: its **kind** (`continuous`, or `binary` for 0 or 1,
# such as gender; a world built from data, chapter 16, also has `integer` and `ordinal` ones, the latter
# with its `levels`) and its hard **bounds**, an open interval outside which the equations are undefined
# (loan's education lives in $(-0.5, 0.5)$). By default a feature is continuous and unbounded.

# %%
#| export
ROLES = ('immutable', 'mutable', 'actionable')
KINDS = ('continuous', 'binary', 'integer', 'ordinal')   # any number, 0 and 1, whole numbers, its levels

@dataclass(frozen=True)
class Node:
    "One feature of an SCM: parents, structural equation, its inverse, noise sampler and role."
    name: str
    parents: tuple[int, ...]   # indices of the parents (all smaller than this node's index)
    f: Callable                # f(x_cols, u_j) -> x_j; x_cols[i] is the column of node i
    f_inv: Callable            # f_inv(x_cols, x_j) -> u_j
    noise: Callable            # noise(rng: np.random.Generator, n) -> float64 array of n draws
    role: str = 'actionable'   # one of ROLES
    domain: str = ''           # condition abduction needs, quoted in errors (e.g. 'in (-0.5, 0.5)')
    kind: str = 'continuous'   # one of KINDS: 'binary' features take only the values 0 and 1
    bounds: tuple[float, float] = (-math.inf, math.inf)   # open interval (low, high) the values must lie in
    direction: str | None = None   # 'increase' or 'decrease': the only way a person may move it (actionable)
    levels: tuple[float, ...] | None = None   # an 'ordinal' feature's values, increasing

def additive(name: str, parents: Sequence[int], mean: Callable, noise: Callable, role: str = 'actionable',
             kind: str = 'continuous', # one of KINDS
             bounds: tuple[float, float] = (-math.inf, math.inf), # the open interval of possible values
            ) -> Node:
    "A node with additive noise, x_j = mean(x_pa) + u_j, whose inverse is u_j = x_j − mean(x_pa)."
    return Node(name, tuple(parents), lambda x, u: mean(x) + u, lambda x, xj: xj - mean(x), noise, role,
                kind=kind, bounds=bounds)


# %% [markdown]
# The noise distributions of the paper's SCMs, as NumPy samplers (NumPy's generators give us seeded
# Gamma draws, which torch's do not). `normal(0, s)` takes a **standard deviation**; the paper gives
# some noises as variances, and we convert where they are used (`tests/test_scm.py` checks every noise).

# %%
#| export
def normal(mean: float, std: float) -> Callable:
    "Sampler of N(mean, std²)."
    return lambda rng, n: rng.normal(mean, std, n)

def bernoulli(p: float = 0.5) -> Callable:
    "Sampler of Bernoulli(p) as 0.0/1.0."
    return lambda rng, n: (rng.random(n) < p).astype(np.float64)

def gamma(shape: float, scale: float) -> Callable:
    "Sampler of Gamma(shape, scale) (mean shape·scale)."
    return lambda rng, n: rng.gamma(shape, scale, n)

def mixture_u1(rng, n):
    "The x1 noise of the 4-node SCMs: ½·N(−2, var 1.5) + ½·N(1.5, var 1)."
    first = rng.random(n) < 0.5
    return np.where(first, rng.normal(-2.0, math.sqrt(1.5), n), rng.normal(1.5, 1.0, n))


# %% [markdown]
# ## The SCM class
#
# `SCM` turns a list of nodes (in topological order) and a labelling function into the operations
# every later chapter uses. Its graph is an adjacency matrix with `A[i, j] = 1` iff $x_j \to x_i$ (row =
# child, column = parent), the convention of chapter 4's causal flow. Recourse needs three facts about
# the graph: the **parents** of a node (its equation's inputs), the **descendants** of an intervened
# feature (what else moves), and the **depth** — the longest directed path, in edges — which is how
# many sweeps a learned model needs to propagate an intervention (chapter 4).

# %%
#| export
def _check_kind_bounds(nd: Node) -> None:
    "Refuse a node whose kind or bounds make no sense, naming the node and the fix."
    if nd.kind not in KINDS:
        raise ValueError(f"node {nd.name!r}: kind must be one of {KINDS}, got {nd.kind!r}")
    if (nd.kind == 'ordinal') != (nd.levels is not None):
        raise ValueError(f"node {nd.name!r}: an ordinal node needs its levels, and only an ordinal has them")
    b = nd.bounds
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
    if not (isinstance(b, tuple) and len(b) == 2 and all(map(number, b)) and b[0] < b[1]):
        raise ValueError(f"node {nd.name!r}: bounds must be a tuple (low, high) of numbers with low < high "
                         f"(math.inf for no bound), got {b!r}")
    if nd.kind == 'binary' and not (b[0] < 0 and b[1] > 1):
        raise ValueError(f"node {nd.name!r} is binary: its bounds {b} must contain 0 and 1 (leave them out)")
    if nd.direction is not None and (nd.direction not in ('increase', 'decrease') or nd.role != 'actionable'):
        raise ValueError(f"node {nd.name!r}: direction must be None, 'increase' or 'decrease', and only on "
                         f"an actionable node; got {nd.direction!r} on a {nd.role} one")

class SCM:
    "A structural causal model with batched, exact generation, abduction and counterfactuals."
    def __init__(self,
                 name: str, # e.g. 'loan'
                 nodes: Sequence[Node], # in a topological order (parents before children)
                 label_fn: Callable, # label_fn(x_cols, u_cols) -> bool tensor: the ground-truth Y
                 description: str = '', # one line for people
                 layout: dict | None = None, # node name -> (x, y) for `draw_graph`
                ):
        for i, nd in enumerate(nodes):
            if nd.role not in ROLES:
                raise ValueError(f"node {nd.name!r}: role must be one of {ROLES}, got {nd.role!r}")
            _check_kind_bounds(nd)
            if any(not 0 <= p < i for p in nd.parents):
                raise ValueError(f"node {nd.name!r} (index {i}) has parents {nd.parents}: nodes must be in "
                                 "topological order, every parent's index smaller than its child's")
        self.name, self.nodes, self.label_fn, self.description = name, tuple(nodes), label_fn, description
        self.layout = layout
        self.names = tuple(nd.name for nd in nodes)
        D = len(nodes)
        A = torch.zeros(D, D)
        for i, nd in enumerate(nodes): A[i, list(nd.parents)] = 1.
        self.adjacency = A
        self.actionable = [i for i, nd in enumerate(nodes) if nd.role == 'actionable']
        self.immutable = [i for i, nd in enumerate(nodes) if nd.role == 'immutable']
        self.mutable = [i for i, nd in enumerate(nodes) if nd.role != 'immutable']
        self.binary = [i for i, nd in enumerate(nodes) if nd.kind == 'binary']
        self.bounds = torch.tensor([nd.bounds for nd in nodes], dtype=torch.float64).T   # (2, D): open bounds

    @property
    def n_features(self) -> int: return len(self.nodes)

    def __repr__(self):
        roles = ', '.join(f"{n}:{nd.role[0]}" for n, nd in zip(self.names, self.nodes))
        return f"SCM({self.name!r}, D={self.n_features}, [{roles}])"


# %%
#| export
def _node_index(self: SCM, i) -> int:
    "Index of a node given by index or name."
    if isinstance(i, str):
        if i not in self.names:
            raise ValueError(f"{self.name} has no feature {i!r}; its features are {list(self.names)}")
        return self.names.index(i)
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n_features:
        raise ValueError(f"feature index must be an int in [0, {self.n_features}) or a name in "
                         f"{list(self.names)}, got {i!r}")
    return int(i)

def _parents(self: SCM, i) -> list[int]:
    "Indices of the parents of feature `i` (index or name)."
    return list(self.nodes[self.index(i)].parents)

def _children(self: SCM, i) -> list[int]:
    "Indices of the children of feature `i`."
    i = self.index(i)
    return [j for j, nd in enumerate(self.nodes) if i in nd.parents]

def _descendants(self: SCM, i) -> list[int]:
    "Indices of all descendants of feature `i` (not including `i`), sorted."
    out, frontier = set(), [self.index(i)]
    while frontier:
        for c in self.children(frontier.pop()):
            if c not in out: out.add(c); frontier.append(c)
    return sorted(out)

def _levels(scm: SCM) -> list[int]:
    "Topological level of each node: the length of the longest directed path ending there."
    lvl = []
    for nd in scm.nodes: lvl.append(1 + max((lvl[p] for p in nd.parents), default=-1))
    return lvl

def _depth(self: SCM) -> int:
    "Length in edges of the longest directed path of the graph."
    return max(_levels(self))

SCM.index, SCM.parents, SCM.children, SCM.descendants = _node_index, _parents, _children, _descendants
SCM.depth = property(_depth)


# %% [markdown]
# ### Noise, generation, abduction and labels
#
# `sample_noise` draws the independent noises (one column per node, from a seeded NumPy generator);
# `generate` runs the equations in order; `abduct` runs the inverses. Both keep their input's dtype:
# float32 (the default, what models train on) or float64 (what the exactness tests use). The
# ground-truth label $Y$ is a deterministic function of the features (and, for the 4-node SCMs, of
# $u_1$), used **only** to train the downstream classifier (chapter 3): recourse is about the
# classifier's decision, not about $Y$. `sample(n, seed)` returns features, noise and labels together.

# %%
#| export
def _rng(generator) -> np.random.Generator:
    if generator is None: return np.random.default_rng()
    if isinstance(generator, np.random.Generator): return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool) and generator >= 0:
        return np.random.default_rng(int(generator))
    raise TypeError("generator must be None, a non-negative int seed or a numpy.random.Generator, "
                    f"got {type(generator).__name__}")

def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer number of samples, got {n!r}")
    return int(n)

def _sample_noise(self: SCM,
                  n: int, # number of people
                  generator=None, # None, an int seed, or a numpy.random.Generator
                  dtype: torch.dtype | None = None, # default: torch's default float dtype
                 ) -> torch.Tensor:
    "Draw (n, D) independent exogenous noise, node by node in index order."
    rng, n = _rng(generator), _check_n(n)
    cols = [nd.noise(rng, n) for nd in self.nodes]
    u = torch.as_tensor(np.stack(cols, 1) if n else np.zeros((0, self.n_features)))
    return u.to(dtype or torch.get_default_dtype())

def _generate(self: SCM,
              u: torch.Tensor, # (n, D) exogenous noise
             ) -> torch.Tensor:
    "Features x (n, D) produced by the structural equations from noise u."
    u = as_features(u, self.n_features, 'u', self.names)
    cols = []
    for j, nd in enumerate(self.nodes): cols.append(nd.f(cols, u[:, j]))
    return torch.stack(cols, 1)

def _abduct(self: SCM,
            x: torch.Tensor, # (n, D) observed features
           ) -> torch.Tensor:
    "Exogenous noise u (n, D) that produces x: the inverse equations, node by node."
    x = as_features(x, self.n_features, 'x', self.names)
    cols = list(x.unbind(1))
    u = torch.stack([nd.f_inv(cols, cols[j]) for j, nd in enumerate(self.nodes)], 1)
    if not torch.isfinite(u).all():
        j = int((~torch.isfinite(u)).any(0).nonzero()[0])
        raise ValueError(f"abduction failed for feature {self.names[j]!r} of {self.name}: its values must be "
                         f"{self.nodes[j].domain or 'finite'} for the inverse equation to exist")
    return u

SCM.sample_noise, SCM.generate, SCM.abduct = _sample_noise, _generate, _abduct


# %%
#| export
def _label(self: SCM,
           x: torch.Tensor, # (n, D) features
           u: torch.Tensor, # (n, D) the noise that produced them
          ) -> torch.Tensor:
    "Ground-truth label Y ∈ {0, 1} (int64, shape (n,))."
    x = as_features(x, self.n_features, 'x', self.names)
    u = as_features(u, self.n_features, 'u', self.names, dtype=x.dtype)
    if u.shape != x.shape:
        raise ValueError(f"x and u must have the same shape, got {tuple(x.shape)} and {tuple(u.shape)}")
    return self.label_fn(list(x.unbind(1)), list(u.unbind(1))).long()

def _sample(self: SCM,
            n: int, # number of people
            seed: int = 0, # seed of the NumPy generator for the noise
            dtype: torch.dtype | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    "Draw n people: features x (n, D), noise u (n, D) and labels y (n,)."
    u = self.sample_noise(n, seed, dtype)
    x = self.generate(u)
    return x, u, self.label(x, u)

SCM.label, SCM.sample = _label, _sample


# %% [markdown]
# ### Counterfactuals under hard interventions
#
# `counterfactual(x, mask, values)` is abduction–action–prediction for a batch. `mask[b, j]` says
# whether row `b` intervenes on feature `j`, and `values[b, j]` (raw units) is the value it is set
# to; entries of `values` where the mask is off are ignored. Shapes broadcast like NumPy: many people
# with one action each (`x`, `mask`, `values` all (n, D)), or **one person against many candidate
# actions** (`x` (1, D), `mask`/`values` (m, D)). Each implementation choice has a reason:
#
# - The loop runs over the D **nodes**, never over rows; each step is one vectorised equation. The
#   prediction step (`_propagate`) accepts any tensors that broadcast over `(..., D)`, so the oracle can
#   pass one person's row and noise once, against a block of candidates, without copying them.
# - `torch.where`, not in-place writes, so gradients flow to `values` (the learned models reuse this).
# - A node with no intervened ancestor in a row keeps its **factual value bit for bit**, rather than
#   being recomputed as $f(\mathrm{pa}, f^{-1}(\mathrm{pa}, x))$, which may differ in the last bit.
#   Hence an empty mask returns the factual exactly and non-descendants never move.

# %%
#| export
def _check_mask_values(scm: SCM, x: torch.Tensor, mask, values
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
    if not isinstance(mask, torch.Tensor): mask = torch.as_tensor(np.asarray(mask))
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = intervene), got dtype {mask.dtype}; "
                        "convert 0/1 masks with mask.bool()")
    if not isinstance(values, torch.Tensor):
        try: values = torch.as_tensor(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError) as e: raise TypeError(f"values must be numeric: {e}") from None
    numeric = values.is_floating_point() or values.dtype in (torch.int32, torch.int64)
    if values.dtype == torch.bool or not numeric:
        raise TypeError(f"values must hold numbers, got dtype {values.dtype}")
    values = values.to(x.dtype)
    for nm, t in (('mask', mask), ('values', values)):
        if t.ndim not in (1, 2) or t.shape[-1] != scm.n_features:
            raise ValueError(f"{nm} must have shape (D,) or (m, D) with D = {scm.n_features} features "
                             f"({', '.join(scm.names)}), got {tuple(t.shape)}")
    try: shape = torch.broadcast_shapes(x.shape, mask.shape, values.shape)
    except RuntimeError:
        raise ValueError(f"x {tuple(x.shape)}, mask {tuple(mask.shape)} and values {tuple(values.shape)} "
                         "do not broadcast: use the same number of rows, or a single row for x (one person, "
                         "many actions) or for mask/values (one action, many people)") from None
    mask, values = mask.expand(shape), values.expand(shape)
    if not torch.isfinite(torch.where(mask, values, 0.)).all():
        raise ValueError("values contains NaN or inf at an intervened position (mask True); "
                         "give finite target values")
    return mask, values, shape

def _counterfactual(self: SCM,
                    x: torch.Tensor, # (n, D) factual features, raw units
                    mask: torch.Tensor, # bool (m, D) or (D,): True where the feature is intervened on
                    values: torch.Tensor, # (m, D) or (D,): target raw values (ignored where mask is False)
                   ) -> torch.Tensor:
    "Counterfactual features under do(x_j = values_j for mask_j): abduction, action, prediction."
    x = as_features(x, self.n_features, 'x', self.names)
    mask, values, shape = _check_mask_values(self, x, mask, values)
    return _propagate(self, x, self.abduct(x), mask, values)

def _propagate(scm: SCM, xf, u, mask, values) -> torch.Tensor:
    "Action and prediction on pre-validated tensors that broadcast together over (..., D); no checks."
    cols, moved = [], []
    for j, nd in enumerate(scm.nodes):
        m = mask[..., j]
        changed = m
        for p in nd.parents: changed = changed | moved[p]
        natural = torch.where(changed, nd.f(cols, u[..., j]), xf[..., j])
        cols.append(torch.where(m, values[..., j], natural))
        moved.append(changed)
    return torch.stack(torch.broadcast_tensors(*cols), -1)

SCM.counterfactual = _counterfactual

# %% [markdown]
# ## The seven SCMs
#
# **The three 4-node graphs.** Nodes $x_s, x_1, x_2, x_3$; $x_s = u_s \sim \mathrm{Bernoulli}(0.5)$ is a
# binary sensitive attribute (immutable); $x_1, x_2, x_3$ are actionable. $u_1$ is a two-component
# Gaussian mixture, $u_2 \sim N(0, 1)$ except $N(0, 0.1)$ (variance) for `triangle-nlin` and
# `collider-nlin`, and $u_3 \sim N(0, 1)$. The graphs:
#
# - **triangle**: $x_s \to x_1 \to x_2$, and $x_3 \leftarrow \{x_s, x_1, x_2\}$;
# - **collider**: $x_s \to x_1$, $x_s \to x_2$, $x_3 \leftarrow \{x_s, x_1, x_2\}$;
# - **chain**: $x_s \to x_1$, $x_2 \leftarrow \{x_s, x_1\}$, $x_3 \leftarrow \{x_s, x_2\}$.

# %%
#| export
sigmoid = torch.sigmoid

_LAYOUTS = {
    'triangle': {'x_s': (0, .5), 'x1': (1, 1), 'x2': (2, 1), 'x3': (1.5, 0)},
    'collider': {'x_s': (0, .5), 'x1': (1, 1), 'x2': (1, 0), 'x3': (2, .5)},
    'chain': {'x_s': (1.5, 0), 'x1': (0, 1), 'x2': (1.5, 1), 'x3': (3, 1)},
}

def _four_node(name: str, graph: str, parents: dict, means: dict, u2_var: float, label: Callable,
               desc: str) -> SCM:
    "Assemble one of the 4-node SCMs from its parents and the mean parts of its equations."
    nodes = [additive('x_s', (), lambda x: 0., bernoulli(0.5), 'immutable', kind='binary'),
             additive('x1', parents['x1'], means['x1'], mixture_u1),
             additive('x2', parents['x2'], means['x2'], normal(0, math.sqrt(u2_var))),
             additive('x3', parents['x3'], means['x3'], normal(0, 1))]
    return SCM(name, nodes, label, desc, _LAYOUTS[graph])

def _linear_label(x, u):
    "Y = 1[x1 + 0.5·x2 + x3 + 0.5·u1 ≥ 0], shared by the three linear SCMs."
    return x[1] + 0.5*x[2] + x[3] + 0.5*u[1] >= 0

def _triangle_lin() -> SCM:
    return _four_node('triangle-lin', 'triangle', {'x1': (0,), 'x2': (1,), 'x3': (0, 1, 2)},
        {'x1': lambda x: x[0], 'x2': lambda x: x[1], 'x3': lambda x: x[0] + 0.25*x[1] + 0.5*x[2]},
        1.0, _linear_label, 'triangle graph, linear equations')

def _triangle_nlin() -> SCM:
    return _four_node('triangle-nlin', 'triangle', {'x1': (0,), 'x2': (1,), 'x3': (0, 1, 2)},
        {'x1': lambda x: x[0], 'x2': lambda x: -1 + 3*sigmoid(2*x[1]),
         'x3': lambda x: x[0] + 0.25*x[1]**2 + 0.5*x[2]},
        0.1, lambda x, u: -1 + torch.exp2(x[1]) + 0.75*x[2].pow(-3) + 0.1*x[3]**2 + 0.5*u[1] >= 0,
        'triangle graph, non-linear equations')

def _collider_lin() -> SCM:
    return _four_node('collider-lin', 'collider', {'x1': (0,), 'x2': (0,), 'x3': (0, 1, 2)},
        {'x1': lambda x: x[0], 'x2': lambda x: 0.5*x[0], 'x3': lambda x: 0.05*x[0] + 0.25*x[1] + 0.25*x[2]},
        1.0, _linear_label, 'collider graph, linear equations')

def _collider_nlin() -> SCM:
    return _four_node('collider-nlin', 'collider', {'x1': (0,), 'x2': (0,), 'x3': (0, 1, 2)},
        {'x1': lambda x: 0.5*x[0], 'x2': lambda x: 0.5*x[0],
         'x3': lambda x: 0.25*x[0] + 0.25*x[1]**2 + 0.25*x[2]**2},
        0.1, lambda x, u: x[1]**3 + x[2] + 3*x[3] + 0.5*u[1] >= 0, 'collider graph, non-linear equations')

def _chain_lin() -> SCM:
    return _four_node('chain-lin', 'chain', {'x1': (0,), 'x2': (0, 1), 'x3': (0, 2)},
        {'x1': lambda x: x[0], 'x2': lambda x: x[0] + 0.5*x[1], 'x3': lambda x: 0.25*x[0] + 0.5*x[2]},
        1.0, _linear_label, 'chain graph, linear equations')

def _chain_nlin() -> SCM:
    return _four_node('chain-nlin', 'chain', {'x1': (0,), 'x2': (0, 1), 'x3': (0, 2)},
        {'x1': lambda x: x[0], 'x2': lambda x: x[0] + 3*sigmoid(2*x[1]), 'x3': lambda x: 0.25*x[0] + x[2]**2},
        1.0, lambda x, u: x[1]**3 + x[2] + 0.75*torch.exp(x[3]) + 0.5*u[1] - 50 >= 0,
        'chain graph, non-linear equations')


# %% [markdown]
# ### Loan (7 nodes, semi-synthetic)
#
# After Karimi et al. (2020): gender $G$ and age $A$ are immutable roots; education $E$ and loan amount
# $L$ depend on both; duration $D$ on $G, A, L$ (it is mutable, but nobody can set a loan's duration
# directly: it follows the amount); income $I$ on $G, A, E$; savings $S$ on income alone.
# Education is the one non-additive equation, $E = -0.5 + \sigma(-1 + 0.5G + \sigma(0.1A) + u_E)$,
# so its inverse needs a logit and exists only for $E \in (-0.5, 0.5)$.

# %%
#| export
def _loan_education_mean(x):
    return -1 + 0.5*x[0] + sigmoid(0.1*x[1])

def _loan_label(x, u):
    "Y = 1[0.3·(−L − D + I + S + α·I·S) ≥ 0], α = +1 if I ≥ 0 and S ≥ 0, else −1."
    L, D, I, S = x[3], x[4], x[5], x[6]
    alpha = torch.where((I >= 0) & (S >= 0), 1., -1.).to(I.dtype)
    return 0.3*(-L - D + I + S + alpha*I*S) >= 0

def _loan() -> SCM:
    nodes = [
        additive('gender', (), lambda x: 0., bernoulli(0.5), 'immutable', kind='binary'),
        additive('age', (), lambda x: -35., gamma(10, 3.5), 'immutable'),
        Node('education', (0, 1), lambda x, u: -0.5 + sigmoid(_loan_education_mean(x) + u),
             lambda x, xj: torch.logit(xj + 0.5) - _loan_education_mean(x), normal(0, 0.5), 'actionable',
             domain='in the open interval (-0.5, 0.5)', bounds=(-0.5, 0.5)),
        additive('loan_amount', (0, 1), lambda x: 1 + 0.01*(x[1] - 5)*(5 - x[1]) + (1 - x[0]), normal(0, 2)),
        additive('duration', (0, 1, 3), lambda x: -1 + 0.1*x[1] + 2*(1 - x[0]) + x[3], normal(0, 3),
                 'mutable'),
        additive('income', (0, 1, 2), lambda x: -4 + 0.1*(x[1] + 35) + 2*x[0] + x[0]*x[2], normal(0, 2)),
        additive('savings', (5,), lambda x: -4 + 1.5*(x[5] > 0).to(x[5].dtype)*x[5], normal(0, 5)),
    ]
    layout = {'gender': (0, 1.5), 'age': (0, 0), 'education': (1, -1.2), 'loan_amount': (1, 2.2),
              'duration': (2, 2.6), 'income': (2, -0.3), 'savings': (3, -0.3)}
    return SCM('loan', nodes, _loan_label, 'semi-synthetic loan approval (Karimi et al. 2020)', layout)


# %% [markdown]
# ### One registry
#
# `get_scm(name)` is how every chapter and user obtains an SCM; `register_scm(name, builder)` adds a new
# world, on which the rest of the package (data, flows, oracle, CARMA) then works unchanged. Below, loan:
# a few facts; generation and abduction as inverses, $\mathrm{abduct}(\mathrm{generate}(u)) = u$ (a real
# test with the Gamma age noise and the logit of education); a table of the seven graphs; five people,
# the same again for the same seed. `tests/test_scm.py` checks every SCM's graph, roles, depth, kinds,
# bounds, noises and inverses, and that every sample lies within what its nodes declare.

# %%
#| export
_BUILDERS: dict[str, Callable[[], SCM]] = {
    'triangle-lin': _triangle_lin, 'triangle-nlin': _triangle_nlin,
    'collider-lin': _collider_lin, 'collider-nlin': _collider_nlin,
    'chain-lin': _chain_lin, 'chain-nlin': _chain_nlin, 'loan': _loan,
}
SCM_NAMES: tuple[str, ...] = tuple(_BUILDERS)
_CACHE: dict[str, SCM] = {}

def get_scm(name: str | SCM, # one of SCM_NAMES (or a registered name), or an SCM (returned as is)
           ) -> SCM:
    "The SCM called `name`."
    if isinstance(name, SCM): return name
    if name not in _BUILDERS:
        close = difflib.get_close_matches(str(name), list(_BUILDERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ''
        raise ValueError(f"unknown SCM {name!r}{hint}; valid names: {', '.join(_BUILDERS)}")
    if name not in _CACHE: _CACHE[name] = _BUILDERS[name]()
    return _CACHE[name]

def register_scm(name: str, # a new name (or, with `replace`, one registered earlier by `register_scm`)
                 builder: Callable[[], SCM], # returns the SCM (called once, lazily)
                 replace: bool = False, # allow redefining an SCM registered earlier (never one of SCM_NAMES)
                ) -> None:
    "Make a new SCM available to `get_scm` and every chapter that takes an SCM name."
    if not isinstance(name, str) or not name: raise ValueError("name must be a non-empty string")
    if not callable(builder): raise TypeError("builder must be a callable returning an SCM")
    if name in SCM_NAMES:
        raise ValueError(f"{name!r} is one of the paper's SCMs and cannot be redefined; "
                         "register yours under a new name")
    if name in _BUILDERS and not replace:
        raise ValueError(f"an SCM called {name!r} is already registered; pass replace=True to redefine it")
    _BUILDERS[name] = builder
    _CACHE.pop(name, None)                                       # the next get_scm builds the new definition


# %%
loan = get_scm('loan')
loan

# %%
test_fail(lambda: get_scm('lone'), contains="did you mean 'loan'")
test_eq([loan.names[i] for i in loan.actionable], ['education', 'loan_amount', 'income', 'savings'])
test_eq(loan.descendants('education'), [5, 6]); test_eq([loan.names[i] for i in loan.binary], ['gender'])
test_eq(loan.bounds[:, loan.index('education')].tolist(), [-0.5, 0.5])
u = loan.sample_noise(2000, generator=1, dtype=torch.float64)
test_close(loan.abduct(loan.generate(u)), u, eps=1e-9)
test_close(loan.abduct(loan.generate(u.float())), u.float(), eps=2e-3)

# %%
pd.DataFrame([{'scm': n, 'D': s.n_features, 'actionable': ', '.join(s.names[i] for i in s.actionable),
               'edges': int(s.adjacency.sum()), 'depth': s.depth, 'description': s.description}
              for n, s in ((n, get_scm(n)) for n in SCM_NAMES)]).set_index('scm')

# %%
x, u, y = loan.sample(5, seed=0)
x2, u2, y2 = loan.sample(5, seed=0)
test_eq(x, x2); test_eq(y, y2)
pd.DataFrame(x.numpy(), columns=loan.names).assign(Y=y.numpy()).round(2)


# %% [markdown]
# Registering a world of one's own takes a name and a function that builds it. A second registration
# under the same name is refused unless it says `replace=True`, which a notebook cell that registers and
# is run again (perhaps with an edited equation) needs; the paper's seven SCMs can never be redefined.
# Models trained on the old definition are not reused: the model cache recognises a split by a digest
# of its data, not by the SCM's name (chapter 2). `tests/test_scm.py` checks redefinition.

# %%
def demo_pair(slope):
    "A two-node SCM a → b with b = slope·a + noise (a throw-away example)."
    nodes = [additive('a', (), lambda x: 0., normal(0, 1)),
             additive('b', (0,), lambda x: slope * x[0], normal(0, 1))]
    return lambda: SCM('demo-pair', nodes, lambda x, u: x[1] > 0, 'a → b')

register_scm('demo-pair', demo_pair(2.))
x, u, _ = get_scm('demo-pair').sample(5, seed=0)
test_close(x[:, 1], 2 * x[:, 0] + u[:, 1])
test_fail(lambda: register_scm('demo-pair', demo_pair(-1.)), contains='replace=True')

# %% [markdown]
# ## Why editing a feature is not a causal counterfactual
#
# Take one loan applicant and the recommendation *"raise your income by 2"*. A non-causal method would
# edit the income column. But savings depend on income ($S = -4 + 1.5\cdot\mathbb 1[I>0]\cdot I + u_S$):
# a person who really earns more also saves more. The counterfactual keeps what the intervention cannot
# touch (gender, age, education, loan amount, duration: non-descendants of income) and moves savings
# through its equation with **the person's own** noise $u_S$.

# %%
x, u, y = loan.sample(2000, seed=3)
person = x[(x[:, 5] > 1)][:1]                                     # someone with positive income
mask = torch.tensor([False, False, False, False, False, True, False])
values = person.clone(); values[0, 5] += 2                       # do(income = income + 2)
edited = values.clone()                                          # the non-causal edit
causal = loan.counterfactual(person, mask, values)
table = pd.DataFrame(torch.cat([person, edited, causal]).numpy(), columns=loan.names,
                     index=['factual', 'edit income only', 'causal counterfactual']).round(3)
table

# %% [markdown]
# Income rose by 2 in both rows, but only the causal counterfactual moved savings, by exactly
# $1.5 \times 2 = 3$ (income was positive before and after). Recourse evaluated by editing columns
# would mis-state what the person's application looks like after they act. Built from `torch.where` and
# the equations, the counterfactual is differentiable in `values`: here $\partial S^{CF}/\partial I = 1.5$.

# %%
test_close(causal[0, 6] - person[0, 6], 3.0, eps=1e-4)
test_eq(causal[0, :5], person[0, :5])                            # non-descendants untouched, bit for bit
v = values.clone().requires_grad_(True)
loan.counterfactual(person, mask, v)[0, 6].backward()
test_close(v.grad[0, 5], 1.5, eps=1e-5); test_eq(v.grad[0, :5].abs().sum(), 0.)

# %% [markdown]
# ### One person, many candidate actions
#
# The oracle of chapter 6 asks this for tens of thousands of candidate actions per person: broadcasting
# makes it one call (one row in `x`, one per candidate in `mask` and `values`). Bad input is refused
# naming the problem and the fix (`tests/test_scm.py` tries each kind); two examples end the cell.

# %%
g, m = torch.Generator().manual_seed(0), 65_535
cand_mask = torch.rand(m, 7, generator=g) < 0.5
cand_mask[:, loan.immutable + [4]] = False                     # only actionable features
cand_vals = person + torch.randn(m, 7, generator=g)
cfs = loan.counterfactual(person, cand_mask, cand_vals)
test_eq(cfs.shape, (m, 7))
test_eq(cfs[cand_mask], cand_vals[cand_mask])                  # intervened features take their values
test_eq(cfs[~cand_mask.any(1)], person.expand(int((~cand_mask.any(1)).sum()), 7))  # empty action: factual
test_fail(lambda: loan.counterfactual(x[:3], cand_mask[:2], cand_vals[:2]), contains='do not broadcast')
test_fail(lambda: loan.abduct(torch.tensor([[0., 0., 0.7, 0., 0., 0., 0.]])), contains="'education'")

# %% [markdown]
# ## The causal graphs (paper Fig. 6)
#
# `draw_graph` draws an SCM's graph with nodes coloured by role, here for the four graph families: the
# three 4-node graphs (shared by the linear and non-linear variants) and loan.

# %%
#| export
ROLE_COLORS = {'immutable': '#b0b0b0', 'mutable': '#f4b860', 'actionable': '#7fc97f'}

def draw_graph(scm: SCM | str, # an SCM or its name
               ax=None, # matplotlib axes to draw on (default: a new figure)
               title: str | None = None):
    "Draw the causal graph of `scm`, its nodes coloured by role (immutable, mutable, actionable)."
    import matplotlib.pyplot as plt
    scm = get_scm(scm)
    if ax is None: _, ax = plt.subplots(figsize=(4, 3))
    pos = scm.layout or {n: (lvl, -k) for k, (n, lvl) in enumerate(zip(scm.names, _levels(scm)))}
    for i, nd in enumerate(scm.nodes):
        for p in nd.parents:
            ax.annotate('', xy=pos[nd.name], xytext=pos[scm.names[p]],
                        arrowprops=dict(arrowstyle='-|>', color='#444', lw=1.2, shrinkA=17, shrinkB=17,
                                        mutation_scale=14))
    for nd in scm.nodes:
        ax.scatter(*pos[nd.name], s=1300, color=ROLE_COLORS[nd.role], edgecolor='#333', zorder=3)
        ax.text(*pos[nd.name], nd.name.replace('_', '\n') if len(nd.name) > 4 else nd.name,
                ha='center', va='center', fontsize=8 if len(nd.name) > 4 else 10, zorder=4)
    xs, ys = zip(*pos.values())
    ax.set_xlim(min(xs) - .5, max(xs) + .5); ax.set_ylim(min(ys) - .5, max(ys) + .5)
    ax.set_axis_off(); ax.set_title(title or scm.name)
    return ax


# %%
from matplotlib.patches import Patch
fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), gridspec_kw={'width_ratios': [1, 1, 1.2, 1.5]})
panels = [('triangle-lin', 'triangle'), ('collider-lin', 'collider'), ('chain-lin', 'chain'),
          ('loan', 'loan')]
for ax, (n, t) in zip(axes, panels):
    draw_graph(n, ax, t)
fig.legend(handles=[Patch(color=c, label=r) for r, c in ROLE_COLORS.items()], loc='lower center', ncol=3,
           frameon=False)
save_figure(fig, 'fig6_causal_graphs')
plt.show()

# %%
#| hide
import nbdev; nbdev.nbdev_export()
