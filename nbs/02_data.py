# %%
#| default_exp data

# %% [markdown]
# # Data: three independent pools per SCM
#
# > Reproducible samples for the classifier, the causal model and recourse, and the scaler that travels
# > with every model.
#
# Three parties meet in causal recourse, and each gets its own data, drawn independently from the
# true SCM of chapter 1, in the sizes of the paper's experimental setup (its appendix):
#
# | pool | size | train / val / test | used by |
# |---|---|---|---|
# | `classifier` | 20 000 | 10 000 / 5 000 / 5 000 | the downstream classifier $h$ (chapter 3) |
# | `causal` | 25 000 | 20 000 / 2 500 / 2 500 | the causal normalizing flow and VACA (chapters 4, 11) |
# | `recourse` | 20 000 | 10 000 / 5 000 / 5 000 | CARMA, the oracle and the baselines (chapters 6–12) |
#
# Keeping them separate mirrors deployment: the bank's classifier was trained on its own data, the
# causal model is fitted on observational data, and recourse is then sought by new applicants. It
# also keeps the evaluation honest — CARMA is never scored on people its causal model was fitted to.
#
# Each split is drawn from its **own** seed, derived from one base seed by NumPy's `SeedSequence`
# spawning scheme, so any split can be regenerated alone and no two splits share random numbers.

# %%
#| export
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from carma_nb.core import as_features, check_seed
from carma_nb.scm import SCM, SCM_NAMES, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close, test_ne
import matplotlib.pyplot as plt
from carma_nb.core import save_figure, save_table

# %% [markdown]
# ## Splits, pools and their seeds

# %%
#| export
POOL_SIZES: dict[str, tuple[int, int, int]] = {
    'classifier': (10_000, 5_000, 5_000),
    'causal': (20_000, 2_500, 2_500),
    'recourse': (10_000, 5_000, 5_000),
}
POOLS, SPLITS = tuple(POOL_SIZES), ('train', 'val', 'test')

def split_seed(seed: int, # the base seed of `make_pools`
               pool: str, # 'classifier', 'causal' or 'recourse'
               split: str, # 'train', 'val' or 'test'
              ) -> np.random.SeedSequence:
    "The explicit, independent seed of one split: SeedSequence(seed) spawned at (pool, split)."
    if pool not in POOLS: raise ValueError(f"unknown pool {pool!r}; choose one of {POOLS}")
    if split not in SPLITS: raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    return np.random.SeedSequence(seed, spawn_key=(POOLS.index(pool), SPLITS.index(split)))

@dataclass(frozen=True)
class Split:
    "One split of a pool: features `x` (n, D), noise `u` (n, D), ground-truth labels `y` (n,)."
    x: torch.Tensor
    u: torch.Tensor
    y: torch.Tensor
    seed: tuple   # (base seed, pool index, split index): regenerates this split alone
    def __len__(self): return len(self.x)
    def __repr__(self):
        return f"Split(n={len(self)}, positive rate={self.y.float().mean():.3f}, seed={self.seed})"

@dataclass(frozen=True)
class Pool:
    "A pool of people with its train / val / test splits."
    name: str
    train: Split
    val: Split
    test: Split

@dataclass(frozen=True)
class Pools:
    "The three independent pools of one SCM."
    scm: str
    seed: int
    classifier: Pool
    causal: Pool
    recourse: Pool
    def __getitem__(self, pool: str) -> Pool:
        if pool not in POOLS: raise KeyError(f"unknown pool {pool!r}; choose one of {POOLS}")
        return getattr(self, pool)


# %% [markdown]
# `make_pools` draws everything. The noise is sampled in float64 by NumPy, pushed through the structural
# equations, and stored as float32 by default (the models' dtype); `sizes` lets a test or a data
# ablation ask for smaller pools.

# %%
#| export
def make_pools(scm: str | SCM, # an SCM or its name
               seed: int = 0, # base seed; each split derives its own from it
               sizes: dict | None = None, # pool -> (train, val, test); default POOL_SIZES (the paper's)
               dtype: torch.dtype = torch.float32,
              ) -> Pools:
    "Draw the classifier, causal-model and recourse pools of `scm`, each split from its own seed."
    scm = get_scm(scm)
    seed = check_seed(seed)
    sizes = {**POOL_SIZES, **(sizes or {})}
    if set(sizes) != set(POOLS):
        raise ValueError(f"sizes may only name the pools {POOLS}, got {sorted(sizes)}")
    pools = {}
    for pool in POOLS:
        if len(sizes[pool]) != 3:
            raise ValueError(f"sizes[{pool!r}] must be (train, val, test), got {sizes[pool]}")
        splits = {}
        for split, n in zip(SPLITS, sizes[pool]):
            ss = split_seed(seed, pool, split)
            u = scm.sample_noise(n, np.random.default_rng(ss), dtype=torch.float64)
            x = scm.generate(u)
            splits[split] = Split(x.to(dtype), u.to(dtype), scm.label(x, u), (int(seed), *ss.spawn_key))
        pools[pool] = Pool(pool, **splits)
    return Pools(scm.name, int(seed), **pools)


# %%
pools = make_pools('loan', seed=0)
pools.recourse

# %%
test_eq([len(getattr(pools.causal, s)) for s in SPLITS], [20_000, 2_500, 2_500])
test_eq(make_pools('loan', seed=0).recourse.test.x, pools.recourse.test.x)            # reproducible
test_ne(pools.recourse.train.x[:5], pools.classifier.train.x[:5])                      # independent pools
small = make_pools('loan', seed=0, sizes={'recourse': (100, 50, 50)})
test_eq(len(small.recourse.val), 50)
test_eq(small.classifier.train.x, pools.classifier.train.x)   # other pools do not depend on this size
test_fail(lambda: make_pools('loan', sizes={'oracle': (1, 1, 1)}), contains='may only name the pools')
test_fail(lambda: make_pools('loan', seed=-1), contains='seed must be a whole number ≥ 0')


# %% [markdown]
# The last test deserves a word: shrinking the recourse pool leaves the classifier pool bit for bit
# the same. A split's content depends only on its own seed and size, never on what was drawn before
# it, so an ablation that changes one pool cannot silently change the others.

# %% [markdown]
# ## The standard scaler
#
# Models work on standardised features $\tilde x = (x - \mu)/\sigma$ with the mean and **unbiased**
# standard deviation of a training split. The scaler is part of the model: a flow fitted on one scaling
# and fed another would be silently wrong, so every checkpoint stores it (`state_dict`), and a model
# loaded from disk restores it (`from_state_dict`).

# %%
#| export
class StandardScaler:
    "Per-feature standardisation (x − mean) / std, with the unbiased std of the data it was fitted on."
    def __init__(self, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        if (mean is None) != (std is None): raise ValueError("give both mean and std, or neither")
        self.mean, self.std = mean, std
        if std is not None:
            if mean.shape != std.shape or mean.ndim != 1:
                raise ValueError(f"mean and std must be 1-D of equal length, "
                                 f"got {tuple(mean.shape)} and {tuple(std.shape)}")
            if not (torch.isfinite(std).all() and (std > 0).all()):
                raise ValueError("every std must be finite and positive "
                                 "(a constant feature cannot be standardised)")

    @property
    def n_features(self) -> int: return self._fitted().mean.shape[0]

    def _fitted(self):
        if self.mean is None:
            raise RuntimeError("this StandardScaler is not fitted yet: call .fit(x_train) first")
        return self

    def fit(self, x: torch.Tensor # (n, D) training features, n ≥ 2
           ) -> 'StandardScaler':
        "Learn mean and unbiased std of each column of x."
        x = as_features(x, x.shape[-1] if hasattr(x, 'shape') else len(x[0]), 'x')
        if len(x) < 2: raise ValueError("fit needs at least 2 rows to estimate a standard deviation")
        self.__init__(x.mean(0), x.std(0, unbiased=True))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        "Standardise raw features x (n, D)."
        s = self._fitted(); x = as_features(x, s.n_features, 'x')
        return (x - s.mean.to(x.dtype)) / s.std.to(x.dtype)

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        "Back to raw units from standardised z (n, D)."
        s = self._fitted(); z = as_features(z, s.n_features, 'z')
        return z * s.std.to(z.dtype) + s.mean.to(z.dtype)

    def state_dict(self) -> dict:
        "Tensors to store in a checkpoint."
        s = self._fitted(); return {'mean': s.mean.clone(), 'std': s.std.clone()}

    @classmethod
    def from_state_dict(cls, d: dict) -> 'StandardScaler':
        "Rebuild a fitted scaler from `state_dict()` output."
        if not isinstance(d, dict) or set(d) != {'mean', 'std'}:
            raise ValueError("a scaler state must be a dict with exactly the keys 'mean' and 'std'")
        return cls(d['mean'], d['std'])

    def __repr__(self):
        return 'StandardScaler(unfitted)' if self.mean is None else f'StandardScaler(D={self.n_features})'


# %%
sc = StandardScaler().fit(pools.causal.train.x)
z = sc.transform(pools.causal.train.x)
test_close(z.mean(0), torch.zeros(7), eps=1e-4)
test_close(z.std(0), torch.ones(7), eps=1e-4)
test_close(sc.inverse_transform(z), pools.causal.train.x, eps=1e-3)
test_eq(StandardScaler.from_state_dict(sc.state_dict()).transform(pools.causal.val.x),
        sc.transform(pools.causal.val.x))
test_fail(lambda: StandardScaler().transform(z), contains='not fitted yet')
test_fail(lambda: sc.transform(z[:, :3]), contains='3 columns but 7')
test_fail(lambda: StandardScaler().fit(torch.ones(10, 2)), contains='constant feature')
sc


# %% [markdown]
# ### Pools as arguments, splits as fingerprints
#
# Every trainer of the later chapters accepts its data the same way: a `Pool`, the `Pools` of an SCM
# (it takes the pool it needs), or nothing for the default pools. `resolve_pool` does that once and
# checks the pool against the SCM. `split_id` is what a cached model records about its training data.

# %%
#| export
def resolve_pool(scm: SCM, # the SCM the pool must belong to
                 pool, # a Pool, the Pools of the SCM (the `name` pool is taken), or None for make_pools(scm)
                 name: str, # which pool: 'classifier', 'causal' or 'recourse'
                ) -> Pool:
    "The `name` pool from a Pool/Pools/None argument, checked against the SCM's number of features."
    pool = make_pools(scm)[name] if pool is None else pool
    if isinstance(pool, Pools): pool = pool[name]
    if not isinstance(pool, Pool):
        raise TypeError(f"pool must be a data Pool (e.g. make_pools(scm).{name}), got {type(pool).__name__}")
    if pool.train.x.shape[1] != scm.n_features:
        raise ValueError(f"pool has {pool.train.x.shape[1]} features but {scm.name} has {scm.n_features}")
    return pool

def split_id(split: Split) -> list:
    "A JSON-able fingerprint of a split for model-cache configs: its seed, size and a digest of its data."
    h = hashlib.sha256()
    for t in (split.x, split.u, split.y):
        h.update(str(t.dtype).encode()); h.update(t.contiguous().numpy().tobytes())
    return [*split.seed, len(split), h.hexdigest()[:16]]


# %% [markdown]
# `split_id` is what a cached model records about its training data. Seed and size alone are not
# enough: a researcher who edits the equations of their own SCM and keeps its name would draw different
# people from the same seeds, and the cache would hand back models trained on the old world without a
# word. So the fingerprint also carries a digest of the split's features, noise and labels: same draw,
# same id; any change to the data, a new id and a fresh training run.

# %%
test_eq(split_id(pools.causal.train), split_id(make_pools('loan', seed=0).causal.train))   # a redraw
tr = pools.causal.train
moved = Split(tr.x.clone(), tr.u, tr.y, tr.seed); moved.x[0, 5] += 1e-3   # same seed and size, other data
test_ne(split_id(moved), split_id(tr))
test_eq(split_id(moved)[:-1], split_id(tr)[:-1])

# %%
test_eq(resolve_pool(get_scm('loan'), pools, 'causal'), pools.causal)
test_fail(lambda: resolve_pool(get_scm('loan'), torch.zeros(3), 'causal'), contains='must be a data Pool')
test_fail(lambda: resolve_pool(get_scm('chain-lin'), pools, 'causal'),
          contains='7 features but chain-lin has 4')


# %% [markdown]
# ## What the pools look like
#
# A summary of every SCM: pool sizes and the share of people whose ground truth is favourable.
# Recourse is sought by the people the *classifier* rejects; with a good classifier that is close to
# the share with $Y = 0$ in the recourse pool. A little under half of every recourse pool has
# $Y = 0$, so about 2 000–2 500 test people per SCM will need recourse (the paper's test counts were
# 2 095–2 364).

# %%
#| export
def pool_summary(scms=SCM_NAMES, # SCM names to summarise
                 seed: int = 0) -> pd.DataFrame:
    "One row per SCM: its size and, per pool, the number of people and the rate of favourable labels."
    rows = []
    for name in scms:
        p = make_pools(name, seed)
        row = {'scm': name, 'D': p.recourse.train.x.shape[1]}
        for pool in POOLS:
            row[f'{pool} n'] = sum(len(getattr(p[pool], s)) for s in SPLITS)
            row[f'{pool} P(Y=1)'] = round(float(p[pool].train.y.float().mean()), 3)
        row['recourse test Y=0'] = int((p.recourse.test.y == 0).sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index('scm')


# %%
summary = pool_summary()
save_table(summary, 'data_pools')
summary

# %%
test_eq(summary['recourse n'].tolist(), [20_000]*7)
assert summary['recourse P(Y=1)'].between(0.5, 0.6).all(), summary['recourse P(Y=1)']       # roughly half
assert summary['recourse test Y=0'].between(2000, 2500).all(), summary['recourse test Y=0']

# %% [markdown]
# And one picture of a recourse pool: the loan recourse training split, feature by feature, split by the
# ground-truth label. Income and savings separate the two classes most clearly, which foreshadows where
# recourse will act; gender and age are immutable, and duration can only follow the loan amount.

# %%
tr = pools.recourse.train
loan_scm = get_scm('loan')
fig, axes = plt.subplots(1, 7, figsize=(18, 2.8))
for j, ax in enumerate(axes):
    col = tr.x[:, j].numpy()
    bins = np.linspace(np.quantile(col, 0.005), np.quantile(col, 0.995), 40) if j else [-.25, .25, .75, 1.25]
    for lab, c in ((0, '#d95f02'), (1, '#1b9e77')):
        ax.hist(col[tr.y.numpy() == lab], bins=bins, alpha=.6, color=c, label=f'Y={lab}', density=True)
    ax.set_title(f"{loan_scm.names[j]}\n({loan_scm.nodes[j].role})", fontsize=9); ax.set_yticks([])
axes[0].legend(fontsize=8)
fig.suptitle('loan: recourse training split by ground-truth label', y=1.08)
save_figure(fig, 'data_loan_recourse_pool')
plt.show()

# %%
#| hide
import nbdev; nbdev.nbdev_export()
