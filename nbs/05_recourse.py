# %%
#| default_exp recourse

# %% [markdown]
# # The recourse problem
#
# > One vocabulary for every method: actions, their cost, coverage, causal validity, and the metrics
# > row of the paper's Table 1.
#
# A person $x^F$ whom the classifier rejects ($h(x^F) < 0.5$) asks what to do. An **action** answers: a set
# $\mathcal I$ of actionable features and target values $\theta_{\mathcal I}$, carried out as hard
# interventions $do(x_{\mathcal I} = \theta_{\mathcal I})$; the causal model does the rest. The oracle
# (chapter 6), CARMA (chapter 7) and the baselines produce actions differently; only one definition of cost
# and success, the one behind every column of the paper's Table 1 (this chapter), makes them comparable.
#
# **Cost**: the weighted squared change of the intervened features, standardised, over each feature's range:
#
# $$\mathrm{cost} = \frac1K \sum_{j\ \text{actionable}} w_j\, a_j\,
#   \frac{(\tilde x^F_j - \tilde x^{CF}_j)^2}{R_j},$$
#
# with $K$ the number of actionable features, $a_j = 1$ iff $j \in \mathcal I$, $w_j \ge 1$ a preference
# weight (default 1), $R_j$ the range of standardised feature $j$ on the unfiltered recourse training split.
# Only intervened features are charged: savings that rise with income come free, a consequence, not an effort.
#
# **Coverage**: the share of people whose counterfactual *under the method's own model* is accepted. **Causal
# validity**: the share whose recommended values, replayed as hard interventions in the **true** SCM (with the
# person's own noise), are accepted. With a wrong causal model, full coverage can hide poor validity.

# %%
#| export
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from carma_nb.core import as_features, check_whole
from carma_nb.data import Pool, Pools, make_pools, resolve_pool
from carma_nb.scm import SCM, _check_mask_values, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
from carma_nb.classifier import train_classifier


# %% [markdown]
# ## Preference weights
#
# Weights say how hard a population finds each actionable feature to change (1 = easiest). They may
# be given by position (one per actionable feature, in feature order) or by name. Every mistake is
# refused with its reason (a wrong length, a value below 1, a name that is not an actionable feature:
# `tests/test_recourse.py` tries each).

# %%
#| export
def as_weights(scm: SCM | str, # the SCM
               weights: Sequence[float] | Mapping[str, float] | torch.Tensor | None = None, # per feature
              ) -> torch.Tensor:
    "Preference weights as a (D,) tensor: w_j ≥ 1 on actionable features, 1 elsewhere (unused there)."
    scm = get_scm(scm)
    w = torch.ones(scm.n_features)
    if weights is None: return w
    act_names = [scm.names[i] for i in scm.actionable]
    if isinstance(weights, Mapping):
        for name, v in weights.items():
            if name not in scm.names:
                raise ValueError(f"{scm.name} has no feature {name!r}; actionable features: {act_names}")
            if name not in act_names:
                raise ValueError(f"feature {name!r} of {scm.name} is not actionable "
                                 f"({scm.nodes[scm.index(name)].role}); weights apply to the actionable "
                                 f"features {act_names}")
            w[scm.index(name)] = float(v)
    elif isinstance(weights, torch.Tensor) and weights.shape == (scm.n_features,):   # already per feature
        w = weights.detach().float().clone()
        w[[i for i in range(scm.n_features) if i not in scm.actionable]] = 1.
    else:
        vals = torch.as_tensor(np.asarray(weights, dtype=np.float64)).flatten().float()
        if len(vals) != len(scm.actionable):
            raise ValueError(f"got {len(vals)} weights but {scm.name} has {len(scm.actionable)} actionable "
                             f"features {act_names}; give one weight per actionable feature, or a dict by "
                             "name")
        w[scm.actionable] = vals
    bad = [(scm.names[i], float(w[i])) for i in scm.actionable if not (torch.isfinite(w[i]) and w[i] >= 1)]
    if bad: raise ValueError(f"weights must be finite and ≥ 1 (1 = easiest to change); got {bad}")
    return w


# %%
test_eq(as_weights('loan', {'education': 3, 'savings': 1})[[2, 6]], torch.tensor([3., 1.]))
test_eq(as_weights('loan', [3, 2, 2, 1]), torch.tensor([1, 1, 3, 2, 1, 2, 1.]))
test_fail(lambda: as_weights('loan', {'age': 2}), contains="'age' of loan is not actionable (immutable)")

# %% [markdown]
# ## The problem of one SCM
#
# `RecourseProblem` gathers what the definitions above need from the data, computed once from the
# **unfiltered** recourse training split: the standardisation, the ranges $R_j$, and the raw minimum
# and maximum of each feature (the oracle's grid spans them). It turns raw features into costs, and
# checks that an action only touches actionable features.

# %%
#| export
RANGES_FROM = ('all', 'rejected')   # whose ranges R_j, min and max: the whole split, or its rejected people

@dataclass
class RecourseProblem:
    "What every recourse method of one SCM shares: scaling, feature ranges, weights, actionability."
    scm: SCM
    mean: torch.Tensor     # (D,) of the unfiltered recourse training split
    std: torch.Tensor      # (D,) unbiased
    ranges: torch.Tensor   # (D,) R_j: max − min of the standardised feature
    lo: torch.Tensor       # (D,) raw minimum
    hi: torch.Tensor       # (D,) raw maximum
    weights: torch.Tensor  # (D,) preference weights (1 = easiest)
    ranges_from: str = 'all'  # 'all' (every method) or 'rejected' (the original code's oracle, chapter 6)

    @property
    def names(self): return self.scm.names
    @property
    def n_features(self): return self.scm.n_features

    def standardise(self, x): return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def check_mask(self, mask: torch.Tensor) -> torch.Tensor:
        "Refuse a mask that intervenes on a non-actionable feature, naming it (bool, or 0/1 float)."
        if not isinstance(mask, torch.Tensor) or not (mask.dtype == torch.bool or mask.is_floating_point()):
            raise TypeError("mask must be a boolean tensor (True = intervene), or a 0/1 float tensor for "
                            "differentiable training")
        if mask.shape[-1] != self.n_features:
            raise ValueError(f"mask must have {self.n_features} columns, got {tuple(mask.shape)}")
        act = self.scm.actionable
        off = [j for j in range(self.n_features) if j not in act and bool(mask[..., j].any())]
        if off:
            j = off[0]
            raise ValueError(f"action intervenes on {self.names[j]!r}, which is not actionable in "
                             f"{self.scm.name} ({self.scm.nodes[j].role}); actionable features: "
                             f"{[self.names[i] for i in act]}")
        return mask

    def cost(self,
             x_f: torch.Tensor, # (n, D) factual raw features
             x_cf: torch.Tensor, # (n, D) counterfactual (or target values) in raw units
             mask: torch.Tensor, # (n, D) bool (or 0/1 float, differentiable): intervened features
             weights: torch.Tensor | None = None, # (D,) override of the problem's weights
            ) -> torch.Tensor:
        "Cost per person (n,): (1/K) Σ_actionable w_j a_j (x̃F_j − x̃CF_j)² / R_j."
        self.check_mask(mask)
        w = self.weights if weights is None else weights
        d2 = (self.standardise(x_f) - self.standardise(x_cf)) ** 2 / self.ranges.to(x_f.dtype)
        return (d2 * w.to(x_f.dtype) * mask).sum(-1) / len(self.scm.actionable)

def _range_people(x: torch.Tensor, ranges_from: str, clf) -> torch.Tensor:
    "The training people whose minimum, maximum and ranges the problem measures."
    if ranges_from not in RANGES_FROM:
        raise ValueError(f"ranges_from must be one of {RANGES_FROM}, got {ranges_from!r}")
    if ranges_from == 'all':
        if clf is not None: raise ValueError("clf is used only with ranges_from='rejected'; leave it out")
        return x
    if clf is None:
        raise ValueError("ranges_from='rejected' needs the classifier that decides who is rejected: "
                         "pass clf=")
    out = rejected(clf, x)
    if len(out) < 2: raise ValueError(f"the classifier rejects {len(out)} people of the recourse training "
                                      "split: at least 2 are needed to measure a range")
    return out

def recourse_problem(scm: SCM | str, # the SCM
                     pools: Pools | Pool | None = None, # pools or recourse pool (default: make_pools(scm))
                     weights=None, # preference weights (see `as_weights`)
                     ranges_from: str = 'all', # 'all' (every method) or 'rejected' (the original oracle)
                     clf=None, # with ranges_from='rejected': the classifier that decides who is rejected
                    ) -> RecourseProblem:
    "The shared recourse problem of `scm`, from its unfiltered recourse training split."
    scm = get_scm(scm)
    x = resolve_pool(scm, pools, 'recourse').train.x
    span = _range_people(x, ranges_from, clf).double()
    x = x.double()
    mean, std = x.mean(0), x.std(0)
    z = (span - mean) / std
    return RecourseProblem(scm, mean.float(), std.float(), (z.max(0).values - z.min(0).values).float(),
                           span.min(0).values.float(), span.max(0).values.float(), as_weights(scm, weights),
                           ranges_from)


# %%
pools = make_pools('loan')
problem = recourse_problem('loan', pools)
x = pools.recourse.test.x[:3]
mask = torch.zeros(3, 7, dtype=torch.bool); mask[:, 5] = True
target = x.clone(); target[:, 5] += 1.0
problem.cost(x, target, mask)

# %% [markdown]
# Raising income by one unit costs the same for everybody, and the cost does not care about the
# savings that follow. Weights multiply it; intervening on age is refused.

# %%
c1 = problem.cost(x, target, mask)
test_close(c1, torch.full((3,), float((1 / problem.std[5])**2 / problem.ranges[5] / 4)), eps=1e-6)
test_close(problem.cost(x, target, mask, as_weights('loan', {'income': 2})), 2 * c1, eps=1e-6)
causal = get_scm('loan').counterfactual(x, mask, target)
test_eq(problem.cost(x, causal, mask), c1)                         # downstream changes are free
bad = mask.clone(); bad[0, 1] = True
test_fail(lambda: problem.cost(x, target, bad),
          contains="intervenes on 'age', which is not actionable in loan (immutable)")


# %% [markdown]
# ## Who needs recourse
#
# The people the classifier rejects. `rejected(clf, x)` filters a split; with `limit`, the first ones
# only (the quick profile evaluates fewer people).

# %%
#| export
def shift_limits(scm: SCM | str, z_range: tuple[float, float], latent_size: int = 1,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    ("Lower and upper limits (D·d_z,) of a latent shift: the clamp range, and 0 on the side a feature's "
     "`direction` forbids (a causal model with one latent per feature; the flow's shift moves it one way).")
    scm = get_scm(scm)
    lo = torch.full((scm.n_features * latent_size,), float(z_range[0]))
    hi = torch.full_like(lo, float(z_range[1]))
    for j, nd in enumerate(scm.nodes if latent_size == 1 else ()):
        if nd.direction == 'increase': lo[j] = 0.
        if nd.direction == 'decrease': hi[j] = 0.
    return lo, hi

def rejected(clf, # a trained classifier with `predict_proba`
             x: torch.Tensor, # (n, D) raw features
             limit: int | None = None, # keep at most this many (the first ones)
            ) -> torch.Tensor:
    "The rows of x that the classifier rejects (p < 0.5)."
    if not callable(getattr(clf, 'predict_proba', None)):
        raise TypeError(f"clf must be a trained classifier with predict_proba (chapter 3), got "
                        f"{type(clf).__name__}")
    if limit is not None: limit = check_whole(limit, 'limit (how many rejected people to keep)', 0)
    with torch.no_grad(): keep = clf.predict_proba(x) < 0.5
    out = x[keep]
    return out if limit is None else out[:limit]


# %%
clf = train_classifier('loan', pools.classifier)
people = rejected(clf, pools.recourse.test.x)
test_eq(len(rejected(clf, pools.recourse.test.x, limit=5)), 5)
assert (clf.predict_proba(people) < 0.5).all()
len(people), len(pools.recourse.test.x)

# %% [markdown]
# The problem's ranges could have been measured over these people instead of the whole split, and the
# original code did exactly that for its oracle (chapter 6 explains why that matters for the paper's
# Table 1). `recourse_problem(..., ranges_from='rejected', clf=clf)` builds that variant; every method
# of this course uses the default, the whole split. The scaling is the same; only the ranges, minima and
# maxima change, and over fewer people they can only shrink (`tests/test_recourse.py` checks the refusals).

# %%
orig = recourse_problem('loan', pools, ranges_from='rejected', clf=clf)
train_rej = rejected(clf, pools.recourse.train.x)
test_eq(orig.lo, train_rej.min(0).values); test_eq(orig.hi, train_rej.max(0).values)
test_eq(orig.mean, problem.mean); test_eq(orig.std, problem.std)
assert (orig.ranges <= problem.ranges).all() and (orig.ranges < problem.ranges).any()
pd.DataFrame({'R_j, whole split': problem.ranges, 'R_j, rejected people': orig.ranges},
             index=problem.names).round(3)


# %% [markdown]
# ## One answer type for every method
#
# The oracle (chapter 6), CARMA (chapter 7) and DiCE-VAE (chapter 12) answer the same question, so they
# return the same `Recommendation`: per person the features to act on (`mask`), the target values in
# raw units (`values`, the person's own value where nothing is done), the counterfactual the method's
# own model predicts (`x_cf`), the classifier's probability for it (`prob`), whether the method
# returned an action at all (`found`: the oracle may find no valid point on its grid), and whether the
# person was accepted already (`accepted`: nothing to do). `make_recommendation` turns an action made by
# hand into one, with the true SCM's counterfactual.

# %%
#| export
@dataclass
class Recommendation:
    "What every recommender returns for n people: the oracle, CARMA, DiCE-VAE."
    mask: torch.Tensor      # (n, D) bool: the features to act on
    values: torch.Tensor    # (n, D) raw target values (the person's own value where not acted on)
    x_cf: torch.Tensor      # (n, D) the counterfactual under the method's own model
    prob: torch.Tensor      # (n,) the classifier's probability of x_cf
    found: torch.Tensor     # (n,) bool: the method returned an action (the oracle may find none)
    accepted: torch.Tensor  # (n,) bool: accepted already, nothing to do

    def __len__(self) -> int: return len(self.mask)

    def rows(self, idx) -> 'Recommendation':
        "The recommendations of the people `idx` (an index, slice or boolean mask)."
        return type(self)(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

def make_recommendation(scm: SCM | str, # the SCM whose true equations give the counterfactual
                        clf, # the frozen classifier
                        x: torch.Tensor, # (n, D) the people, raw features
                        mask: torch.Tensor, # (n, D) bool: the features acted on
                        values: torch.Tensor, # (n, D) raw target values (used where mask)
                       ) -> Recommendation:
    "A `Recommendation` for actions made by hand: the counterfactual is the true SCM's."
    scm = get_scm(scm)
    x = as_features(x, scm.n_features, 'x', scm.names)
    mask, values, _ = _check_mask_values(scm, x, mask, values)
    with torch.no_grad():
        x_cf = scm.counterfactual(x, mask, values)
        prob, accepted = clf.predict_proba(x_cf), clf.predict_proba(x) >= 0.5
    found = torch.ones(len(x), dtype=torch.bool)
    return Recommendation(mask, torch.where(mask, values, x), x_cf, prob, found, accepted)


# %% [markdown]
# ## Evaluating recommendations
#
# `evaluate_recourse` turns a `Recommendation` into the paper's metrics (its Table 1):
#
# | metric | definition |
# |---|---|
# | cost ×100 | mean cost (above) over people with an action, ×100 ("l2 × 100") |
# | coverage % | people whose model counterfactual is accepted (p ≥ 0.5) |
# | validity % | people whose action, replayed in the true SCM, is accepted |
# | acts | mean number of intervened features |
# | prob | mean post-recourse probability under the method's model |
# | prob (true SCM) | the same after replaying in the true SCM |
#
# plus, per feature, how often it is intervened on and the shift $x^{CF} - x^F$ it receives.

# %%
#| export
@dataclass
class RecourseReport:
    "Metrics of one method's recommendations for a set of people."
    metrics: dict                 # the Table-1 row
    per_feature: pd.DataFrame     # intervention frequency and mean shift per actionable feature
    valid: torch.Tensor           # (n,) bool: accepted after replay in the true SCM
    covered: torch.Tensor         # (n,) bool: accepted under the method's model
    cost: torch.Tensor            # (n,) cost (nan where no action was found)
    shift: torch.Tensor           # (n, D) x_cf − x_f under the method's model
    mask: torch.Tensor            # (n, D)

    def _repr_html_(self): return pd.DataFrame([self.metrics])._repr_html_()
    def __repr__(self):
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.metrics.items()}
        return f"RecourseReport({shown})"

def _check_recommendation(problem: RecourseProblem, x: torch.Tensor, rec) -> tuple:
    "The mask, values and counterfactual of `rec`, checked against the people x and the actionable features."
    scm = problem.scm
    if not isinstance(rec, Recommendation):
        raise TypeError(f"rec must be a Recommendation (what the oracle, CARMA and DiCE-VAE return), got "
                        f"{type(rec).__name__}; for actions made by hand use make_recommendation")
    if len(rec) != len(x) or tuple(rec.mask.shape) != tuple(x.shape):
        raise ValueError(f"give one action per person: x {tuple(x.shape)}, rec.mask {tuple(rec.mask.shape)}")
    problem.check_mask(rec.mask)
    mask, values, _ = _check_mask_values(scm, x, rec.mask, rec.values)
    return mask, values, as_features(rec.x_cf, scm.n_features, 'rec.x_cf', scm.names)

def evaluate_recourse(problem: RecourseProblem, # the shared problem (cost, actionability)
                      clf, # the frozen classifier
                      x: torch.Tensor, # (n, D) factual raw features of the people served
                      rec: Recommendation, # the method's answer for them
                      weights: torch.Tensor | None = None, # override the problem's preference weights
                     ) -> RecourseReport:
    "Table-1 metrics (cost ×100, coverage, validity, acts, prob) of a method's recommendations."
    scm = problem.scm
    x = as_features(x, scm.n_features, 'x', scm.names)
    mask, values, x_cf = _check_recommendation(problem, x, rec)
    found = rec.found.bool()
    with torch.no_grad():
        x_true = scm.counterfactual(x, mask, values)
        p_model, p_true = clf.predict_proba(x_cf), clf.predict_proba(x_true)
        cost = torch.where(found, problem.cost(x, values, mask, weights), torch.nan)
    covered, valid = (p_model >= 0.5) & found, (p_true >= 0.5) & found
    shift = (x_cf - x) * mask
    return RecourseReport(_metrics(mask, found, cost, (covered, valid), (p_model, p_true)),
                          _per_feature(scm, mask, found, shift), valid, covered, cost, shift, mask)

def _metrics(mask, found, cost, reached: tuple, probs: tuple) -> dict:
    "The Table-1 row: means over the people with an action (shares over everybody)."
    (covered, valid), (p_model, p_true), n, any_ = reached, probs, max(len(mask), 1), bool(found.any())
    mean = lambda v: float(v[found].float().mean()) if any_ else float('nan')
    return {'people': len(mask), 'found': int(found.sum()), 'cost x100': mean(cost) * 100,
            'coverage %': float(covered.sum() / n * 100), 'validity %': float(valid.sum() / n * 100),
            'acts': mean(mask.sum(1)), 'prob': mean(p_model), 'prob (true SCM)': mean(p_true)}

def _per_feature(scm: SCM, mask, found, shift) -> pd.DataFrame:
    "How often each actionable feature is acted on (%), and its mean shift where it is."
    act = scm.actionable
    freq = mask[found][:, act].float().mean(0) * 100 if found.any() else torch.zeros(len(act))
    on = mask[:, act] & found[:, None]
    mean_shift = (shift[:, act] * on).sum(0) / on.sum(0)              # nan where nobody acts on a feature
    return pd.DataFrame({'feature': [scm.names[j] for j in act], 'intervened %': freq.numpy(),
                         'mean shift (intervened)': mean_shift.double().numpy()}).set_index('feature')


# %% [markdown]
# A naive "method" to see the evaluation at work: raise everybody's income by 3 and nothing else.
# Its counterfactual is computed in the true SCM, so coverage and validity coincide; savings follow
# income for free, which is why this single action already helps many people. The evaluation refuses
# what it cannot judge (a non-actionable feature, as below; a wrong number of actions; anything but a
# `Recommendation`: `tests/test_recourse.py`).

# %%
m = torch.zeros(len(people), 7, dtype=torch.bool); m[:, 5] = True
v = people.clone(); v[:, 5] += 3
naive = make_recommendation('loan', clf, people, m, v)
rep = evaluate_recourse(problem, clf, people, naive)
test_eq(rep.metrics['coverage %'], rep.metrics['validity %'])
test_eq(rep.per_feature.loc['income', 'intervened %'], 100.)
bad = m.clone(); bad[:, 4] = True
test_fail(lambda: evaluate_recourse(problem, clf, people, make_recommendation('loan', clf, people, bad, v)),
          contains="'duration', which is not actionable in loan (mutable)")
rep

# %%
rep.per_feature

# %% [markdown]
# ## Where a model can be trusted: feature domains and statuses
#
# Every method here learns from a finite sample: the classifier, the causal flow and CARMA's networks have
# seen people only inside the range of their training data. Asked about someone far outside it (an age of
# −1000, a gender of 7) they still return numbers, meaningless ones. A service must know, per feature, where
# its answers can be trusted, and say so instead of answering: the feature's **domain**, the intersection of:
#
# - what the SCM declares possible at all (chapter 1): `binary` features are 0 or 1 (a world's `integer`
#   ones whole, chapter 16); a feature with hard bounds lies in that open interval (education in (−½, ½));
# - what the training data covered: each feature's minimum and maximum over the unfiltered recourse training
#   split (the people the method learnt from), widened on each side by `DOMAIN_MARGIN` = 10 % of that range (a
#   binary feature is not widened). Without the margin, a person just beyond the most extreme training example
#   would be refused: 1 to 3 of the 5 000 test people of each SCM; with it, none (`tests/test_recourse.py`
#   checks both on every SCM). A model trained on fewer people has a narrower range, and refuses more.
#
# A model stores its training range (chapter 7), so a saved model can check applicants without its
# data. The check is vectorised: one comparison per feature over the whole batch.

# %%
#| export
DOMAIN_MARGIN = 0.1   # the training range is widened by this share of its width on each side

@dataclass(frozen=True)
class FeatureDomain:
    "Per feature, the values a model is trusted on: the SCM's kind and bounds ∩ training range ± margin."
    scm: str                 # the SCM's name
    low: torch.Tensor        # (D,) float64: lowest value trusted
    high: torch.Tensor       # (D,) float64: highest value trusted
    low_open: torch.Tensor   # (D,) bool: `low` is the SCM's open bound, itself outside
    high_open: torch.Tensor  # (D,) bool: `high` is the SCM's open bound, itself outside
    binary: torch.Tensor     # (D,) bool: only 0 and 1 (within low..high)
    margin: float            # share of the training range added on each side
    whole: torch.Tensor      # (D,) bool: only whole numbers
    levels: tuple            # per feature, the only values it takes (an ordinal's levels), or None

def training_range(x: torch.Tensor, # (n, D) the training people, raw features
                  ) -> torch.Tensor:
    "The (2, D) minimum and maximum of each feature over the training people (float64)."
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2 or not len(x) or not torch.isfinite(x).all():
        raise ValueError(f"training_range needs an (n, D) tensor of finite features, n ≥ 1; got shape "
                         f"{tuple(x.shape)}" + ('' if x.ndim != 2 or not len(x) else ' with NaN or inf'))
    return torch.stack([x.min(0).values, x.max(0).values])

def feature_domain(scm: SCM | str, # the SCM: its kinds and hard bounds
                   feature_range: torch.Tensor, # (2, D) training minimum and maximum (`training_range`)
                   margin: float = DOMAIN_MARGIN, # share of the range added on each side
                  ) -> FeatureDomain:
    "Each feature's domain: the SCM's kind and open bounds ∩ [min − margin·range, max + margin·range]."
    scm = get_scm(scm)
    r = torch.as_tensor(feature_range, dtype=torch.float64)
    shape_ok = r.shape == (2, scm.n_features)
    if not shape_ok or not torch.isfinite(r).all() or (r[0] > r[1]).any():
        got = f"{tuple(r.shape)}" + ' with NaN, inf or min > max' * shape_ok
        raise ValueError(f"feature_range must be a finite (2, {scm.n_features}) tensor of minima ≤ maxima "
                         f"(training_range(x)), got {got}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < math.inf:
        raise ValueError(f"margin must be a finite number ≥ 0 (a share of the training range, e.g. 0.1), "
                         f"got {margin!r}")
    binary = torch.zeros(scm.n_features, dtype=torch.bool); binary[scm.binary] = True
    wide = torch.where(binary, 0., margin * (r[1] - r[0]))        # a binary feature is not widened
    hard = scm.bounds
    low, high = torch.maximum(r[0] - wide, hard[0]), torch.minimum(r[1] + wide, hard[1])
    whole = torch.tensor([nd.kind == 'integer' for nd in scm.nodes])
    return FeatureDomain(scm.name, low, high, low == hard[0], high == hard[1], binary, float(margin), whole,
                         tuple(nd.levels for nd in scm.nodes))

def outside_domain(domain: FeatureDomain, x: torch.Tensor, # (n, D) raw features
                  ) -> torch.Tensor:
    "(n, D) bool: which values lie outside the domain (NaN and inf always do)."
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2 or x.shape[1] != len(domain.low):
        raise ValueError(f"x must be (n, {len(domain.low)}), features of {domain.scm}; got {tuple(x.shape)}")
    below = torch.where(domain.low_open, x <= domain.low, x < domain.low)
    above = torch.where(domain.high_open, x >= domain.high, x > domain.high)
    off = (domain.binary & (x != 0) & (x != 1)) | (domain.whole & (x != x.round()))
    for j, lv in enumerate(domain.levels):          # (each level as float64, and as a model's float32)
        if lv is not None: off[:, j] |= ~torch.from_numpy(np.isin(x[:, j], [*lv, *np.float32(lv)]))
    return below | above | ~torch.isfinite(x) | off


# %% [markdown]
# For the refused rows only, a message names the first feature outside, its value, the domain and why,
# such as `age -1000 outside [-37.43, 73.74] (the training data's range widened by 10 %)`. Brackets say
# if a bound is itself inside: `[` yes, `(` no (an open bound of the SCM: education's lowest training
# value, widened, would pass −0.5).

# %%
#| export
def describe_domain(domain: FeatureDomain, j: int) -> str:
    "Feature j's domain as text (4 significant digits): '{0, 1}', '[-37.43, 73.74]' or '(-0.5, 0.4592]'."
    if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < len(domain.low):
        raise ValueError(f"j must be a feature index 0 … {len(domain.low) - 1} of {domain.scm}, got {j!r}")
    lo, hi = float(domain.low[j]), float(domain.high[j])
    levels = (0, 1) if domain.binary[j] else domain.levels[j]
    if levels: return '{' + ', '.join(f'{v:g}' for v in levels if lo <= v <= hi) + '}'
    span = f"{'(' if domain.low_open[j] else '['}{lo:.4g}, {hi:.4g}{')' if domain.high_open[j] else ']'}"
    return f'whole numbers in {span}' if domain.whole[j] else span

def _why_outside(domain: FeatureDomain, scm: SCM, j: int, v: float) -> str:
    name, (lo, hi) = scm.names[j], scm.nodes[j].bounds
    if not math.isfinite(v): return 'not a finite number'
    if domain.binary[j] and v not in (0, 1): return 'a binary feature: 0 or 1'
    if domain.levels[j] and v not in domain.levels[j]: return 'an ordinal feature: one of its levels'
    if domain.whole[j] and v != round(v): return 'an integer feature: a whole number'
    if not lo < v < hi: return f"the SCM defines {name} only in ({lo:g}, {hi:g})"
    if domain.binary[j]: return 'a value not seen in training'
    return f"the training data's range widened by {100 * domain.margin:g} %"

def _shortest(v: float, dtype: torch.dtype) -> str:
    "The shortest text that reads back as v in its dtype: 16777217, 0.7, 1e+30 (float32 values: 25.3)."
    t = str(np.float32(v) if dtype == torch.float32 else np.float64(v))
    return t.removesuffix('.0')

def domain_messages(domain: FeatureDomain, x: torch.Tensor, # (n, D) raw features
                    bad: torch.Tensor, # (n, D) bool, `outside_domain` (or a subset of it)
                    what: str = '', # prefix of the feature, e.g. 'counterfactual '
                   ) -> list[str]:
    "Per row with a value outside: '<what><feature> <value> outside <domain> (why)', then the others."
    scm, out = get_scm(domain.scm), []
    ok = isinstance(bad, torch.Tensor) and bad.dtype == torch.bool and bad.ndim == 2 and bad.shape == x.shape
    if not ok: raise ValueError(f"bad must be a bool tensor shaped like x {tuple(x.shape)} (outside_domain)")
    for i in bad.any(1).nonzero().flatten().tolist():                  # the refused rows only
        cols = bad[i].nonzero().flatten().tolist()
        j, v = cols[0], float(x[i, cols[0]])
        more = f"; also outside: {', '.join(scm.names[k] for k in cols[1:])}" if len(cols) > 1 else ''
        out.append(f"{what}{scm.names[j]} {_shortest(v, x.dtype)} outside {describe_domain(domain, j)} "
                   f"({_why_outside(domain, scm, j, v)}){more}")
    return out


# %% [markdown]
# Loan's domain from its recourse training split: gender is binary and not widened; education's training
# range, widened, stays inside the SCM's open interval; the others are the training range ± 10 %. A bad
# applicants' file is all outside, the test people all inside (`tests/test_recourse.py` checks the rest).

# %%
dom = feature_domain('loan', training_range(pools.recourse.train.x))
test_eq(training_range(pools.recourse.train.x).float(), torch.stack([problem.lo, problem.hi]))
pd.DataFrame({'domain': [describe_domain(dom, j) for j in range(7)]}, index=get_scm('loan').names)

# %%
odd = pools.recourse.test.x[:6].double().clone()
odd_values = [('gender', 7), ('gender', 0.5), ('education', 0.7), ('age', -1000), ('age', 1e30),
              ('income', math.inf)]
for i, (col, val) in enumerate(odd_values): odd[i, get_scm('loan').index(col)] = val
test_eq(outside_domain(dom, odd).any(1), torch.ones(6, dtype=torch.bool))
test_eq(outside_domain(dom, pools.recourse.test.x).any(), torch.tensor(False))
msgs = domain_messages(dom, odd, outside_domain(dom, odd))
test_eq(msgs[0], 'gender 7 outside {0, 1} (a binary feature: 0 or 1)')
assert msgs[2].startswith('education 0.7 outside (-0.5, 0.')
assert msgs[2].endswith('(the SCM defines education only in (-0.5, 0.5))')

# %% [markdown]
# ### Every person gets a status
#
# A service hands each person one of four answers, and says which:
#
# | status | meaning | targets given |
# |---|---|---|
# | `served` | the classifier accepts the counterfactual of the recommended action | yes |
# | `already accepted` | nothing to do | none needed |
# | `no valid action` | the method's counterfactual is still rejected by the classifier | no |
# | `refused: <feature> <value> outside <domain> (why)` | the person lies outside the domain | no |
# | `refused: counterfactual <feature> <value> outside …` | their counterfactual would leave it | no |
#
# The counterfactual is checked on every feature the action moves: the intervened ones and their
# descendants (a causal model, and a flow above all, extrapolates beyond its training data).
# `recourse_status` computes them for any method's answer: boolean masks for the whole batch, and text
# only for the refused rows. A person outside the domain is refused before anything else: whether the
# classifier accepts them is itself an answer outside what it knows.

# %%
#| export
SERVED, ALREADY_ACCEPTED, NO_VALID_ACTION = 'served', 'already accepted', 'no valid action'

def _moved(scm: SCM, mask: torch.Tensor) -> torch.Tensor:
    "(n, D) bool: the features an action moves, the intervened ones and their descendants."
    reach = torch.eye(scm.n_features)
    for j in range(scm.n_features): reach[j, scm.descendants(j)] = 1.     # D × D, once per call
    return (mask.to(reach.dtype) @ reach) > 0

def recourse_status(domain: FeatureDomain,
                    x: torch.Tensor, # (n, D) the people, raw features
                    mask: torch.Tensor, # (n, D) bool: the recommended interventions
                    x_cf: torch.Tensor, # (n, D) the counterfactual the method predicts
                    accepted: torch.Tensor, # (n,) bool: the classifier already accepts the person
                    prob: torch.Tensor, # (n,) the classifier's probability of x_cf
                   ) -> tuple[np.ndarray, torch.Tensor]:
    "Per person a status ('served', 'already accepted', 'no valid action', 'refused: …'), and the refused."
    scm = get_scm(domain.scm)
    x, x_cf = torch.as_tensor(x), torch.as_tensor(x_cf)           # NaN and inf are refused per row
    if not (x.ndim == 2 and x.shape[1] == scm.n_features and mask.shape == x.shape == x_cf.shape
            and accepted.shape == prob.shape == x.shape[:1]):
        shapes = ', '.join(f'{k} {tuple(t.shape)}' for k, t in zip(('x', 'mask', 'x_cf', 'accepted', 'prob'),
                                                                      (x, mask, x_cf, accepted, prob)))
        raise ValueError(f"give one answer per person, (n, {scm.n_features}) or (n,): got {shapes}")
    bad_in = outside_domain(domain, x)                              # in float64, as every check
    acting = mask.any(1) & ~accepted & ~bad_in.any(1)
    bad_cf = outside_domain(domain, x_cf) & _moved(scm, mask) & acting[:, None]
    r_in, r_cf = bad_in.any(1), bad_cf.any(1)
    status = np.full(len(x), SERVED, dtype=object)
    status[(~accepted & (prob < 0.5)).numpy()] = NO_VALID_ACTION
    status[accepted.numpy()] = ALREADY_ACCEPTED
    status[r_cf.numpy()] = ['refused: ' + m for m in domain_messages(domain, x_cf, bad_cf, 'counterfactual ')]
    status[r_in.numpy()] = ['refused: ' + m for m in domain_messages(domain, x, bad_in)]
    return status, r_in | r_cf


# %% [markdown]
# Five people, one of each: the naive income action of above for two rejected people (one made valid,
# one not), an accepted person, a rejected person whose action would push income beyond the domain, and
# a person whose gender is 7.

# %%
acc_x = pools.recourse.test.x[clf.predict_proba(pools.recourse.test.x) >= 0.5][:1]
ok_i, no_i = int(rep.valid.nonzero()[0]), int((~rep.valid).nonzero()[0])
x5 = torch.cat([people[[ok_i, no_i]], acc_x, people[:2]])
m5 = torch.zeros(5, 7, dtype=torch.bool); m5[[0, 1, 3, 4], 5] = True
v5 = x5.clone(); v5[[0, 1], 5] += 3; v5[3, 5] = 1e6; x5[4, 0] = 7
cf5 = get_scm('loan').counterfactual(x5, m5, v5)
with torch.no_grad(): p5 = clf.predict_proba(cf5)
cf5 = torch.where(m5.any(1, keepdim=True), cf5, x5)
status5, refused5 = recourse_status(dom, x5, m5, cf5, clf.predict_proba(x5) >= 0.5, p5)
test_eq(list(status5[:3]), ['served', 'no valid action', 'already accepted'])
assert status5[3].startswith('refused: counterfactual income 1e+06 outside [')
assert status5[3].endswith('; also outside: savings')
test_eq(status5[4], 'refused: gender 7 outside {0, 1} (a binary feature: 0 or 1)')
test_eq(refused5.tolist(), [False, False, False, True, True])
list(status5)


# %% [markdown]
# ## Timing
#
# Speed is reported two ways, and the label says which: **latency at batch size 1** (one person at a time,
# as the paper's Table 1 measured) and **batched time per person** (the whole set in one call, divided by
# its size, as a deployed service runs).

# %%
#| export
def time_per_person(fn: Callable[[torch.Tensor], object], # recommends for a batch of raw features
                    x: torch.Tensor, # (n, D) the people
                    single: int = 50, # how many people to time one by one
                    repeat: int = 3, # batched repeats (median)
                    batch: int | None = None, # batch size of the batched run (default: all of x at once)
                   ) -> dict:
    "Latency per person at batch size 1 (median over `single` people) and batched time per person, in ms."
    if not callable(fn): raise TypeError(f"fn must be a function of a batch of people, got {type(fn)}")
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not len(x):
        raise ValueError(f"x must be a non-empty (n, D) tensor of people, got {getattr(x, 'shape', type(x))}")
    single, repeat = check_whole(single, 'single (people timed one by one)'), check_whole(repeat, 'repeat')
    if batch is not None: batch = check_whole(batch, 'batch (people per batched call)')
    fn(x[:1])
    lat = []
    for i in range(min(single, len(x))):
        t0 = time.perf_counter(); fn(x[i:i + 1]); lat.append(time.perf_counter() - t0)
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for xb in (x.split(batch) if batch else [x]): fn(xb)
        runs.append(time.perf_counter() - t0)
    return {'ms per person, batch size 1': statistics.median(lat) * 1e3,
            'ms per person, batched': statistics.median(runs) / len(x) * 1e3, 'people': len(x)}


# %%
replay = lambda xb: get_scm('loan').counterfactual(xb, m[:len(xb)], v[:len(xb)])
timing = time_per_person(replay, people, single=20)
test_eq(timing['people'], len(people))
timing

# %%
#| hide
import nbdev; nbdev.nbdev_export()
