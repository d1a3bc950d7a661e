# %%
#| default_exp classifier

# %% [markdown]
# # The downstream classifier
#
# > The automated decision-maker whose rejections recourse must overturn: trained once, then frozen.
#
# Recourse is always *with respect to a model*: a bank's credit scorer, a CV filter. Here that model
# is the **downstream classifier** $h$, trained on the classifier pool of each SCM to predict the
# ground-truth label $Y$ (`SPEC.md` §3). After training it is frozen — recourse methods may query it
# and differentiate through it, never change it — and it defines who needs recourse: everyone with
# $p = h(\tilde x) < 0.5$.
#
# | SCMs | architecture |
# |---|---|
# | triangle-lin, collider-lin, chain-lin | logistic regression |
# | triangle-nlin, collider-nlin, chain-nlin | MLP, one hidden layer of 16 (ReLU) |
# | loan | MLP 32 × 32 (ReLU) |
#
# Trained with binary cross-entropy, 500 epochs, batch 256, Adam with learning rate $10^{-3}$.
#
# One design decision matters for everything downstream: the classifier **takes raw features and
# carries its own scaler**. The oracle, CARMA and the baselines each standardise with their own data,
# so a classifier that expected pre-standardised input would invite silent unit mix-ups. Here
# `clf.predict_proba(x_raw)` is all anybody needs.

# %%
#| export
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch import nn
import torch.nn.functional as F

from carma_nb.core import (TRAINER_VERSION, Checkpoint, Profile, as_features, cached_checkpoint, check_positive, check_seed,
                           check_whole, get_profile, load_checkpoint, one_thread, progress, save_checkpoint)
from carma_nb.data import (Pool, Pools, StandardScaler, load_model, make_pools, model_from_checkpoint, resolve_pool,
                           save_model, split_id, trained_model)
from carma_nb.scm import SCM, SCM_NAMES, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import tempfile
from pathlib import Path
import matplotlib.pyplot as plt
from carma_nb.core import project_root, read_draws, save_figure, save_table

# %% [markdown]
# ## Architecture per SCM

# %%
#| export
CLASSIFIER_HIDDEN: dict[str, tuple[int, ...]] = {
    'triangle-lin': (), 'collider-lin': (), 'chain-lin': (),
    'triangle-nlin': (16,), 'collider-nlin': (16,), 'chain-nlin': (16,),
    'loan': (32, 32),
}
#: Validation accuracy reached by the original work (SPEC §3), shown next to ours, never used as a result.
PAPER_CLF_ACCURACY = {'triangle-lin': 0.98, 'triangle-nlin': 0.98, 'collider-lin': 0.99, 'collider-nlin': 0.91,
                      'chain-lin': 0.98, 'chain-nlin': 0.97, 'loan': 0.92}

def classifier_hidden(scm: str | SCM) -> tuple[int, ...]:
    "Hidden widths of the classifier of `scm` (empty: logistic regression); new SCMs default to (32, 32)."
    return CLASSIFIER_HIDDEN.get(get_scm(scm).name, (32, 32))


# %% [markdown]
# ## The model
#
# `Classifier` is a plain MLP (no hidden layer = logistic regression) with the scaler stored as
# buffers, so it moves and saves with the weights. Its parameters are frozen after training
# (`requires_grad=False`), yet it stays differentiable with respect to its **input**: CARMA
# back-propagates the validity loss through it.

# %%
#| export
class Classifier(nn.Module):
    "Frozen downstream classifier h on raw features; carries its own standardisation."
    def __init__(self,
                 scm: str, # name of the SCM the classifier was trained for
                 hidden: tuple[int, ...], # hidden widths; () is logistic regression
                 scaler: StandardScaler, # fitted on the classifier training split
                ):
        super().__init__()
        self.scm, self.hidden = scm, tuple(hidden)
        self.feature_names = get_scm(scm).names
        D = scaler.n_features
        widths = (D, *hidden, 1)
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2: layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)
        self.register_buffer('mean', scaler.mean.clone().float())
        self.register_buffer('std', scaler.std.clone().float())

    @property
    def n_features(self) -> int: return self.mean.shape[0]

    def logits(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        "Logit of the favourable outcome for raw features x (n, D) → (n,); `check=False` skips validation."
        if check: x = as_features(x, self.n_features, 'x', self.feature_names)
        return self.net(((x - self.mean.to(x.dtype)) / self.std.to(x.dtype)).to(self.mean.dtype)).squeeze(-1)

    def predict_proba(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        "Probability p = h(x) of the favourable outcome, shape (n,); `check=False` for pre-validated hot loops."
        return torch.sigmoid(self.logits(x, check))

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        "The decision: True (favourable) iff p ≥ 0.5, shape (n,)."
        return self.predict_proba(x) >= 0.5

    forward = predict_proba

    def freeze(self) -> 'Classifier':
        "Evaluation mode, no parameter gradients: the deployed, frozen classifier."
        self.eval()
        for p in self.parameters(): p.requires_grad_(False)
        return self

    def __repr__(self):
        kind = 'logistic regression' if not self.hidden else f"MLP {'×'.join(map(str, self.hidden))}"
        return f"Classifier({self.scm!r}, {kind}, D={self.n_features})"


# %% [markdown]
# Saving and loading go through the core checkpoint helpers: weights, a config that rebuilds the
# architecture, and the scaler. Loading with `scm=` refuses a checkpoint of another SCM.

# %%
#| export
def save_classifier(clf: Classifier, path) -> Path:
    "Save a classifier (weights, architecture, scaler) to `path`."
    return save_model(clf, path, 'classifier')

def load_classifier(path, # a file written by `save_classifier` (or the cache)
                    scm: str | None = None, # if given, the checkpoint must belong to this SCM
                   ) -> Classifier:
    "Load a frozen classifier; refuses a checkpoint of another SCM."
    return load_model(Classifier, path, 'classifier', scm)


# %% [markdown]
# ## Training
#
# Plain mini-batch Adam on the BCE loss. Batches come from one `randperm` per epoch (a `DataLoader`
# adds nothing for in-memory tensors). The validation accuracy is recorded every epoch so the
# chapter can show the curve. Training goes through the model cache: the same SCM, data seeds,
# architecture and epochs return the stored model instantly.
#
# `optimizer='sgd'` trains with plain SGD at the same learning rate instead. That is what the original
# code did (its classifier trainer builds `torch.optim.SGD`), and the last section of this chapter
# shows what it changes. Adam stays the default, as SPEC §3 asks. Only a non-default optimizer
# enters the cache key, so every model trained before this option existed keeps its key.

# %%
#| export
#: 'adam': SPEC §3 and the default; 'sgd': plain SGD, as the original code trained its classifiers.
CLASSIFIER_OPTIMIZERS = {'adam': torch.optim.Adam, 'sgd': torch.optim.SGD}

@one_thread()   # models must not depend on the caller's thread count (chapter 0)
def _fit_classifier(scm: SCM, pool: Pool, hidden, epochs: int, batch: int, lr: float, seed: int, verbose: bool,
                    optimizer: str = 'adam'):
    torch.manual_seed(seed)
    scaler = StandardScaler().fit(pool.train.x)
    clf = Classifier(scm.name, hidden, scaler)
    opt = CLASSIFIER_OPTIMIZERS[optimizer](clf.net.parameters(), lr=lr)
    xtr = scaler.transform(pool.train.x); ytr = pool.train.y.float()
    xva = scaler.transform(pool.val.x); yva = pool.val.y
    g = torch.Generator().manual_seed(seed)
    curve = []
    for _ in progress(range(epochs), desc=f'classifier {scm.name}', disable=None if verbose else True):
        for idx in torch.randperm(len(xtr), generator=g).split(batch):
            loss = F.binary_cross_entropy_with_logits(clf.net(xtr[idx]).squeeze(-1), ytr[idx])
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        with torch.no_grad(): curve.append(float(((clf.net(xva).squeeze(-1) >= 0).long() == yva).float().mean()))
    return clf.state_dict(), scaler.state_dict(), {'history_val_accuracy': torch.tensor(curve)}

def train_classifier(scm: str | SCM, # the SCM (or its name)
                     pool: Pool | Pools | None = None, # the classifier pool (default: make_pools(scm).classifier)
                     profile: str | Profile | None = None, # epochs come from the profile (paper: 500)
                     seed: int = 0, # weight initialisation and batch order
                     epochs: int | None = None, # override the profile's epochs
                     batch: int = 256, lr: float = 1e-3,
                     cache: bool = True, # reuse / store the trained model in the model cache
                     verbose: bool = True, # progress bar
                     optimizer: str = 'adam', # 'adam' (SPEC §3) or 'sgd' (what the original code used)
                    ) -> Classifier:
    "Train (or fetch from the cache) the frozen downstream classifier of `scm` (SPEC §3)."
    scm = get_scm(scm)
    pool = resolve_pool(scm, pool, 'classifier')
    epochs = check_whole(get_profile(profile).clf_epochs if epochs is None else epochs, 'epochs')
    batch, lr, seed = check_whole(batch, 'batch'), check_positive(lr, 'lr'), check_seed(seed)
    if optimizer not in CLASSIFIER_OPTIMIZERS:
        raise ValueError(f"optimizer must be 'adam' (SPEC §3, the default) or 'sgd' (the original code's), got {optimizer!r}")
    hidden = classifier_hidden(scm)
    cfg = {'kind': 'classifier', 'trainer': TRAINER_VERSION, 'scm': scm.name, 'hidden': list(hidden), 'epochs': epochs, 'batch': batch, 'lr': lr,
           'seed': seed, 'train': split_id(pool.train), 'val': split_id(pool.val),
           **({} if optimizer == 'adam' else {'optimizer': optimizer})}   # Adam models keep their cache keys
    fit = lambda: _fit_classifier(scm, pool, hidden, epochs, batch, lr, seed, verbose, optimizer)
    return trained_model(Classifier, 'classifier', cfg, fit, cache)


# %%
t0 = time.perf_counter()
clf = train_classifier('loan')
print(f'{clf} in {time.perf_counter() - t0:.1f} s (cached models load instantly)')
clf

# %% [markdown]
# What the classifier gives us: probabilities on raw features, decisions, and gradients with respect
# to the input (but none for its frozen parameters).

# %%
pools = make_pools('loan')
x = pools.classifier.val.x[:5].clone().requires_grad_(True)
p = clf.predict_proba(x)
p.sum().backward()
test_eq(p.shape, (5,))
test_eq(clf.decide(x), p >= 0.5)
assert x.grad.abs().sum() > 0 and all(q.grad is None for q in clf.parameters())
test_fail(lambda: clf.predict_proba(torch.zeros(3, 4)), contains='4 columns but 7 features are expected (gender, age')
test_fail(lambda: clf.predict_proba(torch.full((1, 7), float('nan'))), contains='NaN or inf')
p.detach()

# %% [markdown]
# Saving and loading: identical outputs, and a loan classifier cannot be loaded as a chain-lin one.

# %%
with tempfile.TemporaryDirectory() as d:
    path = save_classifier(clf, Path(d)/'clf.pt')
    clf2 = load_classifier(path, scm='loan')
    test_eq(clf2.predict_proba(pools.classifier.test.x), clf.predict_proba(pools.classifier.test.x))
    test_fail(lambda: load_classifier(path, scm='chain-lin'), contains="has scm='loan' but scm='chain-lin' was requested")

# %% [markdown]
# ## All seven classifiers
#
# The validation accuracy of each SCM's classifier next to the original work's (a labelled reference
# column, not a result of ours), and the signed difference in percentage points. We also count the
# rejected people in the recourse test split, the population every later chapter serves (the paper's
# counts were 2 095–2 364).

# %%
#| export
PAPER_REJECTED_TEST = {'triangle-lin': 2248, 'collider-lin': 2284, 'chain-lin': 2095, 'triangle-nlin': 2106,
                       'collider-nlin': 2179, 'chain-nlin': 2320, 'loan': 2364}

def accuracy(clf: Classifier, split) -> float:
    "Share of a data split's rows (`split.x`, `split.y`) whose label the classifier decides correctly."
    with torch.no_grad(): return float((clf.decide(split.x).long() == split.y).float().mean())

def classifier_table(profile: str | Profile | None = None, seed: int = 0, verbose: bool = False,
                     optimizer: str = 'adam', # see `train_classifier`
                    ) -> pd.DataFrame:
    "Validation/test accuracy of every SCM's classifier, with the original work's values alongside."
    rows = []
    for name in SCM_NAMES:
        pools = make_pools(name, seed)
        clf = train_classifier(name, pools.classifier, profile, verbose=verbose, optimizer=optimizer)
        with torch.no_grad(): rejected = int((~clf.decide(pools.recourse.test.x)).sum())
        rows.append({'scm': name, 'model': repr(clf).split(', ')[1], 'val acc': accuracy(clf, pools.classifier.val),
                     'test acc': accuracy(clf, pools.classifier.test), 'paper val acc (reference)': PAPER_CLF_ACCURACY[name],
                     'rejected test people': rejected, 'paper rejected (reference)': PAPER_REJECTED_TEST[name]})
    df = pd.DataFrame(rows).set_index('scm')
    df['difference (pts)'] = 100 * (df['val acc'] - df['paper val acc (reference)'])
    df['not worse than reference by > 1.5 pts'] = df['difference (pts)'] >= -1.5
    return df


# %%
profile = get_profile()
table = classifier_table(profile)
save_table(table.round(4), 'classifier_accuracy')
print(f'profile: {profile.name} ({profile.clf_epochs} epochs)')
table.round(4)

# %%
if profile.name == 'paper': assert table['not worse than reference by > 1.5 pts'].all(), table
assert (table['val acc'] > 0.85).all()

# %% [markdown]
# At the paper's settings our classifiers are **more** accurate than the original work's, by up to
# 7–8 points on collider-nlin and loan. Every label is a deterministic function of the observed
# features (for the 4-node SCMs, $u_1 = x_1 - x_s$ is itself observable), so a well-trained model can
# separate the classes almost perfectly. The last section of this chapter finds where the original
# numbers come from: the original code trained with plain SGD. What matters downstream is the
# population the classifier rejects, and those counts are close to the paper's.

# %% [markdown]
# The validation curves: the linear SCMs' logistic regressions converge within a few dozen epochs;
# the MLPs keep improving slowly.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for name in SCM_NAMES:
    c = train_classifier(name, profile=profile, verbose=False)
    ax.plot(np.arange(1, len(c.history['val_accuracy']) + 1), c.history['val_accuracy'].numpy(), label=name)
ax.set_xlabel('epoch'); ax.set_ylabel('validation accuracy'); ax.set_ylim(0.85, 1.0); ax.legend(fontsize=8, ncol=2)
ax.set_title(f'downstream classifiers ({profile.name} profile)')
save_figure(fig, 'classifier_curves')
plt.show()

# %% [markdown]
# ## What the original code did differently
#
# The original work's public code (github.com/ayanmaj92/carma-recourse: `recourse_utils/clf_trainer.py`
# and the settings in `_params/_clf/`) trains its classifiers with `torch.optim.SGD`, not Adam, at the
# same learning rate ($10^{-3}$), batch (256) and epochs (500). Its labels are thresholded, as in SPEC,
# so the labels are not the difference. Plain SGD at that rate is still far from converged after 500
# epochs, and the models it stops at are weakest where the boundary is hardest to learn. We retrain
# every classifier that way (`optimizer='sgd'`, same data and seed) and put it next to the Adam models
# above and the original numbers.

# %%
sgd = classifier_table(profile, optimizer='sgd')
save_table(sgd.round(4), 'classifier_accuracy_sgd')
compare = pd.DataFrame({'Adam val acc (SPEC, ours)': table['val acc'], 'SGD val acc (original code, ours)': sgd['val acc'],
                        'paper val acc (reference)': table['paper val acc (reference)'],
                        'Adam − paper (pts)': table['difference (pts)'], 'SGD − paper (pts)': sgd['difference (pts)'],
                        'SGD rejected test people': sgd['rejected test people'],
                        'paper rejected (reference)': table['paper rejected (reference)']})
compare.round(4)

# %%
test_fail(lambda: train_classifier('loan', optimizer='adamw'), contains="optimizer must be 'adam'")
if profile.name == 'paper':
    gap = compare[['Adam − paper (pts)', 'SGD − paper (pts)']].abs()
    assert gap['SGD − paper (pts)'].mean() < gap['Adam − paper (pts)'].mean() / 2, gap
    assert set(sgd['val acc'].nsmallest(2).index) == {'loan', 'collider-nlin'}, sgd   # the original's two weakest

# %% [markdown]
# Loan and collider-nlin are the two SGD classifiers outside 1.5 points of the original numbers. Is
# that one unlucky seed? Five initialisations (and batch orders) of each:

# %%
seed_acc = {}
for name in ('loan', 'collider-nlin'):
    pl = make_pools(name)
    for s in range(5):
        seed_acc[(name, s)] = accuracy(train_classifier(name, pl.classifier, profile, seed=s, optimizer='sgd', verbose=False), pl.classifier.val)
seeds_sgd = pd.Series(seed_acc).unstack()
seeds_sgd = seeds_sgd.assign(mean=seeds_sgd.mean(axis=1), paper=[PAPER_CLF_ACCURACY[n] for n in seeds_sgd.index])
seeds_sgd.round(4)

# %%
test_eq(seed_acc[('loan', 0)], sgd.loc['loan', 'val acc'])                  # seed 0 is the table's model
gap = seeds_sgd[list(range(5))].sub(seeds_sgd['paper'], axis=0).abs()
if profile.name == 'paper':                                                  # the means stay outside 1.5 points; one seed of each comes within
    assert ((seeds_sgd['mean'] - seeds_sgd['paper']).abs() > 0.015).all() and ((gap <= 0.015).sum(axis=1) == 1).all(), seeds_sgd

# %% [markdown]
# ### One draw of data
#
# The seeds above all train on the same draw of the classifier pool, and so did the original work's one
# classifier per SCM. `tools/classifier_draws.py SCM --optimizer OPT --draws 31` trains the classifier at
# the paper profile (seed 0) on 31 independent draws of the pool (pool seeds 0–30) and scores each on
# its own validation split. Its fourteen runs take about 40 minutes of compute on this 2-core machine,
# too slow for the test suite, so their output is committed as `figures/classifier_draws.txt` and read
# here. Draw 0 is the data every table above uses; at the paper profile the cell checks that the file's
# draw 0 is this chapter's models.

# %%
draws = read_draws(project_root()/'figures'/'classifier_draws.txt')
draws[['scm', 'optimizer']] = draws['run'].str.extract(r'^(\S+) \((\w+)\)$')
by_run = draws.groupby(['scm', 'optimizer'], sort=False)['value']
spread = pd.DataFrame({'draw 0': by_run.first(), 'min': by_run.min(), 'median': by_run.median(), 'max': by_run.max()})
spread['original (reference)'] = [PAPER_CLF_ACCURACY[n] for n, _ in spread.index]
spread['median − original (pts)'] = 100 * (spread['median'] - spread['original (reference)'])
spread['draws within 1.5 pts'] = draws.assign(ok=(draws['value'] - draws['scm'].map(PAPER_CLF_ACCURACY)).abs() <= 0.015) \
                                      .groupby(['scm', 'optimizer'], sort=False)['ok'].sum()
spread = spread.swaplevel().sort_index(level=0, sort_remaining=False)
spread.round(4)

# %%
test_eq(set(draws.groupby('run').size()), {31})
if profile.name == 'paper':   # the file's draw 0 is this chapter's Adam and SGD classifiers
    test_close(spread.loc['adam', 'draw 0'].reindex(table.index).values, table['val acc'].values, eps=6e-5)
    test_close(spread.loc['sgd', 'draw 0'].reindex(sgd.index).values, sgd['val acc'].values, eps=6e-5)
sg, ad = spread.loc['sgd'], spread.loc['adam']
assert (sg['median − original (pts)'].abs() <= 1.5).all()                       # SGD: every SCM within on the median draw
assert set(sg.index[sg['draws within 1.5 pts'] < 31]) == {'loan', 'collider-nlin'}
assert set(ad.index[ad['draws within 1.5 pts'] == 31]) == {'collider-lin'} and (ad['median − original (pts)'] > 0).all()
gap = draws[draws['optimizer'] == 'sgd'].assign(gap=lambda d: (d['value'] - d['scm'].map(PAPER_CLF_ACCURACY)).abs())
worse = {n: int((d['gap'] > d.loc[d['pool seed'] == 0, 'gap'].item()).sum()) for n, d in gap.groupby('scm')}
test_eq((worse['collider-nlin'], worse['loan']), (0, 1))                        # draws further from the original than draw 0

# %% [markdown]
# What this shows:
#
# - **With SGD, every SCM is within 1.5 points of the original on the median draw.** Five SCMs are
#   within on all 31 draws. Loan is within on 27 draws and collider-nlin on 23.
# - **Draw 0 is among the worst draws for exactly those two.** It is collider-nlin's highest accuracy of
#   the 31, and only one draw of loan is further from the original's value. So the two misses of the SGD
#   table above come from the data draw, not from the way we train.
# - **With Adam (SPEC §3), the gap is the optimiser.** It is within 1.5 points on every draw only for
#   collider-lin. Triangle-lin and chain-lin come within on one draw each, the other four SCMs on none.
#   On the median draw Adam's accuracies sit 0.8 to 7.4 points above the original's.

# %% [markdown]
# How confident each loan classifier is about the people recourse will serve: the median logit of the
# people it rejects in the recourse training split.

# %%
rec_x = pools.recourse.train.x
confidence = {}
for opt in CLASSIFIER_OPTIMIZERS:
    c = train_classifier('loan', pools.classifier, profile, optimizer=opt, verbose=False)
    with torch.no_grad(): lg = c.logits(rec_x[~c.decide(rec_x)])
    confidence[opt] = {'rejected people': len(lg), 'median logit': float(lg.median()), 'median p': float(torch.sigmoid(lg).median())}
confidence = pd.DataFrame(confidence).T
if profile.name == 'paper': assert confidence.loc['adam', 'median logit'] < -30 < -5 < confidence.loc['sgd', 'median logit'], confidence
confidence

# %% [markdown]
# **Measured** (paper profile, seed 0, `figures/classifier_accuracy_sgd.md`): with SGD, five of the
# seven classifiers land within 0.7 points of the original numbers. The remaining two are loan (1.8
# points below) and collider-nlin (1.9 above), which are also the original work's two weakest
# classifiers. Over five SGD seeds their means stay outside 1.5 points: loan 0.902 (seeds 0.896–0.905,
# paper 0.92), collider-nlin 0.929 (seeds 0.924–0.932, paper 0.91); one seed of each comes within
# (loan 0.905, collider-nlin 0.924). With Adam the gaps reach 7.6 and 7.0 points. Over 31 draws of
# data (the table above), SGD is within 1.5 points of every original number on the median draw, and
# our draw 0 is the worst draw for collider-nlin and the second worst for loan. So the original
# accuracies are an optimisation effect plus one draw of data: their classifiers had not finished
# learning.
#
# The unfinished classifier is also far less confident. The median logit of the loan people it rejects
# is −2.8 (p ≈ 0.06), against −71 for Adam's (p ≈ 10⁻³¹). CARMA learns from the gradient of p, so this
# matters for chapter 7's training.
#
# This package keeps Adam, as SPEC §3 says. A converged classifier is the better stand-in for a
# deployed decision-maker, and every number in later chapters uses it. Passing `optimizer='sgd'` gives
# the original code's classifier instead. The choice is not cosmetic: chapter 9 reruns the
# preference study with the SGD classifier, and there the savings result changes direction.

# %%
#| hide
import nbdev; nbdev.nbdev_export()
