# %%
#| default_exp classifier

# %% [markdown]
# # The downstream classifier
#
# > The automated decision-maker whose rejections recourse must overturn: trained once, then frozen.
#
# Recourse is always *with respect to a model*: a bank's credit scorer, a CV filter. Here that model
# is the **downstream classifier** $h$, trained on the classifier pool of each SCM (chapter 2) to
# predict the ground-truth label $Y$ (chapter 1). After training it is frozen — recourse methods may
# query it and differentiate through it, never change it — and it defines who needs recourse:
# everyone with $p = h(x) < 0.5$.
#
# | SCMs | architecture |
# |---|---|
# | triangle-lin, collider-lin, chain-lin | logistic regression |
# | triangle-nlin, collider-nlin, chain-nlin | MLP, one hidden layer of 16 (ReLU) |
# | loan | MLP 32 × 32 (ReLU) |
#
# Each is trained with binary cross-entropy for 500 epochs, batch 256, by plain SGD (no momentum) at
# learning rate $10^{-3}$. The paper's appendix says Adam, but the original code, which produced the
# paper's numbers, trains with plain SGD, and we follow the code (the study
# [`studies/classifier_optimizer.ipynb`](../studies/classifier_optimizer.ipynb) compares the two).
#
# One design decision matters for everything downstream: the classifier **takes raw features and
# carries its own scaler**. The oracle, CARMA and the baselines each standardise with their own data,
# so a classifier that expected pre-standardised input would invite silent unit mix-ups. Here
# `clf.predict_proba(x_raw)` is all anybody needs.

# %%
#| export
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
import torch.nn.functional as F

from carma_nb.core import (TRAINER_VERSION, Checkpoint, Profile, as_features, cached_checkpoint,
                           check_positive, check_seed, check_whole, get_profile, load_checkpoint,
                           load_weights, one_thread, progress, save_checkpoint)
from carma_nb.data import Pool, Pools, StandardScaler, make_pools, resolve_pool, split_id
from carma_nb.scm import SCM, SCM_NAMES, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import tempfile
import matplotlib.pyplot as plt
from carma_nb.core import save_figure, save_table

# %% [markdown]
# ## Architecture per SCM
#
# The widths above, and the validation accuracy the paper's classifiers reached, which this chapter's
# classifiers are compared with (a reference, never used as a result).

# %%
#| export
CLASSIFIER_HIDDEN: dict[str, tuple[int, ...]] = {
    'triangle-lin': (), 'collider-lin': (), 'chain-lin': (),
    'triangle-nlin': (16,), 'collider-nlin': (16,), 'chain-nlin': (16,),
    'loan': (32, 32),
}
#: Validation accuracy of the paper's classifiers (its appendix): a reference shown next to ours.
PAPER_CLF_ACCURACY = {'triangle-lin': 0.98, 'triangle-nlin': 0.98, 'collider-lin': 0.99,
                      'collider-nlin': 0.91, 'chain-lin': 0.98, 'chain-nlin': 0.97, 'loan': 0.92}

def classifier_hidden(scm: str | SCM) -> tuple[int, ...]:
    "Hidden widths of the classifier of `scm` (empty: logistic regression); new SCMs default to (32, 32)."
    return CLASSIFIER_HIDDEN.get(get_scm(scm).name, (32, 32))


# %%
test_eq(classifier_hidden('chain-lin'), ())
test_eq(classifier_hidden(get_scm('loan')), (32, 32))
test_fail(lambda: classifier_hidden('loans'), contains='loans')


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
        widths = (scaler.n_features, *hidden, 1)
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
        z = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.net(z.to(self.mean.dtype)).squeeze(-1)

    def predict_proba(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        "Probability p = h(x) of the favourable outcome, shape (n,); `check=False` for pre-validated input."
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
# ## Models that carry their scaler
#
# The classifier is the course's first trained model, and the causal flow (chapter 4) and VACA
# (chapter 11) share its shape: an SCM name, hidden widths, and the scaler of their training data as
# `mean`/`std` buffers. One set of helpers serves all three. `save_model` writes a checkpoint (chapter
# 0: weights, a config that rebuilds the architecture, the scaler); `model_from_checkpoint` rebuilds
# the frozen model with its training curves; `trained_model` trains through the model cache, whose
# key is the whole training configuration; `load_model` reads a file and, given `scm=`, refuses a
# checkpoint of another SCM.

# %%
#| export
def save_model(model: nn.Module, # a model with `scm`, `hidden` and the `mean`/`std` buffers of its scaler
               path, # destination file
               kind: str, # model family recorded in the checkpoint, e.g. 'classifier'
              ) -> Path:
    "Save a scaler-carrying model (weights, SCM, hidden widths, scaler) as a checkpoint of `kind`."
    missing = [a for a in ('scm', 'hidden', 'mean', 'std') if not hasattr(model, a)]
    if missing:
        raise TypeError(f"save_model needs a model carrying its scaler; "
                        f"{type(model).__name__} lacks {missing}")
    cfg = {'kind': kind, 'scm': model.scm, 'hidden': list(model.hidden)}
    return save_checkpoint(path, model.state_dict(), cfg, {'mean': model.mean, 'std': model.std})

def model_from_checkpoint(cls, # the model class, built as cls(scm, hidden, scaler)
                          ck: Checkpoint, # a checkpoint whose config has 'scm' and 'hidden'
                         ) -> nn.Module:
    "Rebuild a frozen `cls(scm, hidden, scaler)` model from a checkpoint, with its config and curves."
    cfg = ck.config
    if ck.scaler is None or 'scm' not in cfg or 'hidden' not in cfg:
        raise ValueError(f"{ck.path or 'this checkpoint'} is not a scaler-carrying model "
                         "(needs 'scm' and 'hidden' in its config and a scaler): load it with its own loader")
    model = cls(cfg['scm'], tuple(cfg['hidden']), StandardScaler.from_state_dict(ck.scaler))
    load_weights(model, ck.state_dict, ck.path or f"a {cfg.get('kind', 'model')} checkpoint")   # all, finite
    model.history = {k.removeprefix('history_'): v for k, v in (ck.extras or {}).items()}
    model.config = cfg
    return model.freeze()

def trained_model(cls, # the model class
                  kind: str, # model family: the cache's sub-folder
                  cfg: dict, # the whole training configuration: the cache key
                  fit, # () → (state_dict, scaler state, extras): trains the model
                  cache: bool = True, # through the model cache (False: train now, store nothing)
                 ) -> nn.Module:
    "Rebuild a `cls` model trained by `fit()` (through the model cache under `kind` unless `cache=False`)."
    if cache: return model_from_checkpoint(cls, cached_checkpoint(kind, cfg, fit))
    sd, scaler, extras = fit()
    return model_from_checkpoint(cls, Checkpoint(sd, cfg, scaler, None, extras))

def load_model(cls, path, # the model class and a file written by `save_model`
               kind: str, # the model family the file must hold
               scm: str | None = None, # if given, the checkpoint must belong to this SCM
              ) -> nn.Module:
    "Load a frozen model of `kind`; with `scm`, refuse a checkpoint trained for another SCM."
    expect = {'kind': kind, **({'scm': get_scm(scm).name} if scm else {})}
    return model_from_checkpoint(cls, load_checkpoint(path, expect=expect))


# %% [markdown]
# For the classifier they take one line each:

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
# Plain mini-batch SGD on the BCE loss. Batches come from one `randperm` per epoch (a `DataLoader`
# adds nothing for in-memory tensors). The validation accuracy is recorded every epoch so the chapter
# can show the curve. Training goes through the model cache: the same SCM, data, architecture,
# optimiser and epochs return the stored model instantly. How a model is optimised (its epochs, batch
# size, learning rate) travels as one small settings object, `Fit`, checked when it is made; chapters 4
# and 11 extend it for their models. The classifier's `ClassifierFit` adds the optimiser:
# `fit=ClassifierFit(optimizer='adam')` trains with Adam at the same learning rate instead, for anyone
# who wants a converged classifier.

# %%
#| export
#: 'sgd': plain SGD, the original code's and the default; 'adam': Adam at the same learning rate.
CLASSIFIER_OPTIMIZERS = {'sgd': torch.optim.SGD, 'adam': torch.optim.Adam}

@dataclass(frozen=True)
class Fit:
    "How a model is optimised: epochs (None: the profile's), batch size, learning rate; checked when made."
    epochs: int | None = None
    batch: int = 256
    lr: float = 1e-3

    def __post_init__(self):   # checked, and stored as plain int and float (they enter cache keys)
        set_ = lambda k, v: object.__setattr__(self, k, v)
        if self.epochs is not None: set_('epochs', check_whole(self.epochs, 'epochs'))
        set_('batch', check_whole(self.batch, 'batch')); set_('lr', check_positive(self.lr, 'lr'))

    def config(self, epochs: int) -> dict:
        "The settings for a cache key, with `epochs` (the profile's) where none were set."
        return {**asdict(self), 'epochs': epochs if self.epochs is None else self.epochs}

@dataclass(frozen=True)
class ClassifierFit(Fit):
    "How the classifier is trained; the defaults are the original code's plain SGD."
    optimizer: str = 'sgd'   # 'sgd' (plain, no momentum: the original code's) or 'adam'

    def __post_init__(self):
        super().__post_init__()
        if self.optimizer not in CLASSIFIER_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(CLASSIFIER_OPTIMIZERS)} "
                             f"('sgd', the original code's, is the default), got {self.optimizer!r}")

def check_fit(fit, kind: type) -> Fit:
    "`fit` if it is a `kind` (None: its defaults), else an error that shows how to make one."
    if fit is None: return kind()
    if not isinstance(fit, kind):
        raise TypeError(f"fit must be a {kind.__name__}, e.g. {kind.__name__}(epochs=20), got {fit!r}")
    return fit

@one_thread()   # models must not depend on the caller's thread count (chapter 0)
def _fit_classifier(scm: SCM, pool: Pool, cfg: dict, verbose: bool):
    "Train on `pool.train` with the settings of `cfg`; the validation accuracy after every epoch."
    torch.manual_seed(cfg['seed'])
    scaler = StandardScaler().fit(pool.train.x)
    clf = Classifier(scm.name, cfg['hidden'], scaler)
    opt = CLASSIFIER_OPTIMIZERS[cfg['optimizer']](clf.net.parameters(), lr=cfg['lr'])
    xtr, ytr = scaler.transform(pool.train.x), pool.train.y.float()
    xva, yva = scaler.transform(pool.val.x), pool.val.y
    g = torch.Generator().manual_seed(cfg['seed'])
    curve = []
    for _ in progress(range(cfg['epochs']), desc=f'classifier {scm.name}', disable=None if verbose else True):
        for idx in torch.randperm(len(xtr), generator=g).split(cfg['batch']):
            loss = F.binary_cross_entropy_with_logits(clf.net(xtr[idx]).squeeze(-1), ytr[idx])
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        with torch.no_grad():
            curve.append(float(((clf.net(xva).squeeze(-1) >= 0).long() == yva).float().mean()))
    return clf.state_dict(), scaler.state_dict(), {'history_val_accuracy': torch.tensor(curve)}

def train_classifier(scm: str | SCM, # the SCM (or its name)
                     pool: Pool | Pools | None = None, # the classifier pool (default: make_pools(scm))
                     profile: str | Profile | None = None, # epochs come from the profile (paper: 500)
                     seed: int = 0, # weight initialisation and batch order
                     fit: ClassifierFit | None = None, # epochs, batch, lr, optimiser (default: the original)
                     cache: bool = True, # reuse / store the trained model in the model cache
                     verbose: bool = True, # progress bar
                    ) -> Classifier:
    "Train (or fetch from the cache) the frozen downstream classifier of `scm`."
    scm = get_scm(scm)
    pool = resolve_pool(scm, pool, 'classifier')
    fit, seed = check_fit(fit, ClassifierFit), check_seed(seed)
    cfg = {'kind': 'classifier', 'trainer': TRAINER_VERSION, 'scm': scm.name,
           'hidden': list(classifier_hidden(scm)), **fit.config(get_profile(profile).clf_epochs),
           'seed': seed, 'train': split_id(pool.train), 'val': split_id(pool.val)}
    fit_ = lambda: _fit_classifier(scm, pool, cfg, verbose)
    return trained_model(Classifier, 'classifier', cfg, fit_, cache)


# %%
profile = get_profile()
t0 = time.perf_counter()
clf = train_classifier('loan')
print(f'{clf} in {time.perf_counter() - t0:.1f} s (cached models load instantly)')
test_eq(clf.config['optimizer'], 'sgd')                      # the default, and part of the cache key
test_eq(clf.config['epochs'], profile.clf_epochs)
test_fail(lambda: ClassifierFit(optimizer='adamw'), contains="optimizer must be one of ['adam', 'sgd']")
test_fail(lambda: train_classifier('loan', fit=Fit(epochs=3)), contains='fit must be a ClassifierFit')
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
test_fail(lambda: clf.predict_proba(torch.zeros(3, 4)),
          contains='4 columns but 7 features are expected (gender, age')
test_fail(lambda: clf.predict_proba(torch.full((1, 7), float('nan'))), contains='NaN or inf')
p.detach()

# %% [markdown]
# Saving and loading: identical outputs, the training curve comes back with the weights, and a loan
# classifier cannot be loaded as a chain-lin one.

# %%
with tempfile.TemporaryDirectory() as d:
    path = save_classifier(clf, Path(d)/'clf.pt')
    clf2 = load_classifier(path, scm='loan')
    test_eq(clf2.predict_proba(pools.classifier.test.x), clf.predict_proba(pools.classifier.test.x))
    test_fail(lambda: load_classifier(path, scm='chain-lin'),
              contains="has scm='loan' but scm='chain-lin' was requested")
    test_fail(lambda: save_model(nn.Linear(2, 1), Path(d)/'x.pt', 'classifier'),
              contains="lacks ['scm', 'hidden'")
test_eq(len(clf.history['val_accuracy']), profile.clf_epochs)

# %% [markdown]
# ## All seven classifiers
#
# The validation accuracy of each SCM's classifier next to the paper's, and the signed difference in
# percentage points. We also count the rejected people in the recourse test split, the population
# every later chapter serves, next to the paper's counts.

# %%
#| export
PAPER_REJECTED_TEST = {'triangle-lin': 2248, 'collider-lin': 2284, 'chain-lin': 2095, 'triangle-nlin': 2106,
                       'collider-nlin': 2179, 'chain-nlin': 2320, 'loan': 2364}

def accuracy(clf: Classifier, split) -> float:
    "Share of a data split's rows (`split.x`, `split.y`) whose label the classifier decides correctly."
    with torch.no_grad(): return float((clf.decide(split.x).long() == split.y).float().mean())

def classifier_table(profile: str | Profile | None = None, # epochs come from the profile
                     seed: int = 0, # the data's base seed (chapter 2)
                     verbose: bool = False) -> pd.DataFrame:
    "Validation/test accuracy and rejected test people of every SCM's classifier, the paper's alongside."
    rows = []
    for name in SCM_NAMES:
        pools = make_pools(name, seed)
        clf = train_classifier(name, pools.classifier, profile, verbose=verbose)
        with torch.no_grad(): rejected = int((~clf.decide(pools.recourse.test.x)).sum())
        rows.append({'scm': name, 'model': repr(clf).split(', ')[1],
                     'val acc': accuracy(clf, pools.classifier.val),
                     'test acc': accuracy(clf, pools.classifier.test),
                     'paper val acc (reference)': PAPER_CLF_ACCURACY[name], 'rejected test people': rejected,
                     'paper rejected test people (reference)': PAPER_REJECTED_TEST[name]})
    df = pd.DataFrame(rows).set_index('scm')
    df.insert(4, 'val acc − paper (pts)', 100 * (df['val acc'] - df['paper val acc (reference)']))
    return df


# %%
table = classifier_table(profile)
save_table(table.round(4), 'classifier_accuracy')
print(f'profile: {profile.name} ({profile.clf_epochs} epochs)')
table.round(4)

# %% [markdown]
# Five of the seven classifiers land within 0.7 points of the paper's accuracy. The other two are the
# paper's own two weakest, loan (1.8 points below) and collider-nlin (1.9 above): both within 2 points.
# That gap is the one draw of data the table uses: over 31 independent draws, every SCM's median is
# within 1.5 points of the paper's value (the study linked at the top). The populations recourse will
# serve are within 7 % of the paper's counts on every SCM.
#
# The quick profile trains the same 500-epoch classifiers (each takes seconds), so this check is the
# paper's claim under both profiles.

# %%
gap = table['val acc − paper (pts)'].abs()
test_eq(profile.clf_epochs, 500)
assert (gap <= 2).all() and (gap <= 0.7).sum() >= 5, gap
test_eq(set(gap.nlargest(2).index), {'loan', 'collider-nlin'})
rejected_ratio = table['rejected test people'] / table['paper rejected test people (reference)']
assert ((rejected_ratio - 1).abs() <= 0.07).all(), rejected_ratio

# %% [markdown]
# The validation curves show why the paper's classifiers are no more accurate: plain SGD at this
# learning rate is slow. Every classifier is still improving over its last 100 epochs, loan the most.

# %%
curves = {n: train_classifier(n, profile=profile, verbose=False).history['val_accuracy'] for n in SCM_NAMES}
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, c in curves.items(): ax.plot(np.arange(1, len(c) + 1), c.numpy(), label=name)
ax.set_xlabel('epoch'); ax.set_ylabel('validation accuracy'); ax.set_ylim(0.6, 1.0)
ax.legend(fontsize=8, ncol=2)
ax.set_title(f'downstream classifiers, plain SGD ({profile.name} profile)')
save_figure(fig, 'classifier_curves')
plt.show()

# %%
last100 = pd.Series({n: float(c[-1] - c[-101]) for n, c in curves.items()})
assert (last100 > 0).all(), last100
test_eq(last100.idxmax(), 'loan')
(100 * last100).round(2).rename('gain over the last 100 epochs (pts)')

# %%
#| hide
import nbdev; nbdev.nbdev_export()
