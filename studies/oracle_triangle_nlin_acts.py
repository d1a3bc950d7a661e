# %% [markdown]
# # Study: why the oracle acts on more features on triangle-nlin than in the paper
#
# **Question.** Run in the original code's convention (chapter 6: grid end points and cost ranges from
# the rejected people of the recourse training split), the oracle reproduces the paper's Table 1
# oracle cost within 6 % on all seven SCMs, and its number of intervened features (acts) within 0.15 on
# six. On triangle-nlin it intervenes on 1.40 features per person where the paper reports 1.07. What
# differs: the grid, ties between candidates, the people, or the classifier?
#
# Everything here uses the paper profile: the chapter's SGD classifiers (500 epochs, the original
# code's optimiser, chapter 3), all rejected test people, the paper's grid (25 bins). Oracle answers
# come from the shared model cache, so re-running the notebook takes about a minute once they exist;
# computing them all from an empty cache took about 30 minutes on the shared 2-core machine.

# %%
import collections
import os

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from carma_nb.classifier import ClassifierFit, train_classifier
from carma_nb.core import project_root, save_figure, save_table
from carma_nb.data import make_pools
from carma_nb.oracle import PAPER_ORACLE, cached_oracle, oracle_bins, person_grids
from carma_nb.recourse import evaluate_recourse, recourse_problem, rejected
from carma_nb.scm import SCM_NAMES

os.environ['CARMA_FIGURE_DIR'] = str(project_root()/'figures'/'studies')   # this study's outputs
torch.set_num_threads(1)
pd.set_option('display.width', 160); pd.set_option('display.max_columns', 20)
NAME, PROFILE = 'triangle-nlin', 'paper'


# %% [markdown]
# ## One run: a data draw, a classifier seed, the oracle in the original convention
#
# `draw` is the seed of the three data pools (chapter 2), `seed` the classifier's initialisation and
# batch order (chapter 3). Draw 0 and seed 0 are the chapters' own.

# %%
def oracle_run(name: str, draw: int = 0, seed: int = 0):
    "The rejected test people, classifier, original-convention problem and oracle answer of one run."
    pools = make_pools(name, draw)
    clf = train_classifier(name, pools.classifier, PROFILE, fit=ClassifierFit(optimizer='sgd'),
                           seed=seed, verbose=False)
    people = rejected(clf, pools.recourse.test.x)
    problem = recourse_problem(name, pools, ranges_from='rejected', clf=clf)
    return people, clf, problem, cached_oracle(problem, clf, people)

def run_row(name: str, draw: int = 0, seed: int = 0) -> dict:
    "The original-convention oracle's cost, acts and probability for one run."
    people, clf, problem, res = oracle_run(name, draw, seed)
    m = evaluate_recourse(problem, clf, people, res).metrics
    return {'scm': name, 'data draw': draw, 'classifier seed': seed, 'people': len(people),
            'cost x100': m['cost x100'], 'acts': m['acts'], 'prob': m['prob'],
            'x3 acted on %': float(res.mask[:, 3].float().mean() * 100) if name != 'loan' else float('nan')}


# %%
people, clf, problem, res = oracle_run(NAME)
base = run_row(NAME)
base

# %% [markdown]
# ## Not the grid, not ties
#
# The grid is the paper's (25 values per feature between $2\min_j - x_j$ and $2\max_j - x_j$, the
# original code's formula), and chapter 6 shows the batched search equals the loop. Ties could matter if
# many people had a single-feature action almost as cheap as the chosen one: a search that broke ties
# differently (the original keeps the first strictly cheaper candidate in its own order) would then
# count fewer acts. So: for each person whose chosen action uses several features, how much more does
# the cheapest valid single-feature action cost?

# %%
def best_single_cost(problem, clf, x: torch.Tensor) -> torch.Tensor:
    "(P,) the cost of each person's cheapest valid single-feature action on the oracle's grid."
    scm, bins = problem.scm, oracle_bins(problem.scm)
    grid, best = person_grids(problem, x, bins), torch.full((len(x),), float('inf'))
    with torch.no_grad():
        for k, j in enumerate(scm.actionable):
            for b in range(bins):
                m = torch.zeros_like(x, dtype=torch.bool); m[:, j] = True
                v = x.clone(); v[:, j] = grid[:, k, b]
                ok = clf.predict_proba(scm.counterfactual(x, m, v)) >= 0.5
                c = problem.cost(x, v, m)
                best = torch.where(ok & (c < best), c, best)
    return best

single = best_single_cost(problem, clf, people)
multi = res.mask.sum(1) > 1
ratio = (single[multi] / res.cost[multi])
ties = pd.Series({f'within {q:g}x': float((ratio <= q).float().mean() * 100)
                  for q in (1.01, 1.05, 1.1, 1.5, 2)},
                 name='% of multi-feature people whose best single action costs (× the chosen)')
has_single = bool(torch.isfinite(single[multi]).all())
print(f'{int(multi.sum())} of {len(people)} people get a multi-feature action; every one of them also has '
      f'a valid single-feature action: {has_single}; median cost ratio {float(ratio.median()):.2f}')
ties.round(1)

# %% [markdown]
# Almost none is a near-tie (7 % within 5 %): the best single-feature action typically costs about
# 40 % more than the chosen one (median 1.38×). Tie-breaking cannot move acts by 0.33. What the
# multi-feature actions are:

# %%
names = problem.scm.names
act = problem.scm.actionable
patterns = collections.Counter(' + '.join(names[j] for j in act if m[j]) for m in res.mask.tolist())
pd.Series({k: v / len(people) * 100 for k, v in patterns.most_common()}, name='% of people').round(1)

# %% [markdown]
# Mostly $x_1$ and $x_3$ together. $x_3$ enters the label only through $0.1\,x_3^2$, so how much an
# action on $x_3$ helps depends on how the classifier learnt that weak term: a property of the
# classifier, not of the search.
#
# ## The classifier and the people
#
# Ten classifier seeds on the chapters' data (draw 0), and five data draws with the chapters' classifier
# seed (0): the same oracle, in the same convention.

# %%
seeds = pd.DataFrame([run_row(NAME, 0, s) for s in range(10)])
draws = pd.DataFrame([run_row(NAME, d, 0) for d in range(5)])
spread = pd.concat([seeds.assign(varied='classifier seed'), draws.assign(varied='data draw')])
paper = PAPER_ORACLE.loc[NAME]
seeds[['classifier seed', 'people', 'cost x100', 'acts', 'prob', 'x3 acted on %']].round(3)

# %%
draws[['data draw', 'people', 'cost x100', 'acts', 'prob', 'x3 acted on %']].round(3)

# %% [markdown]
# The classifier seed alone moves acts from 1.03 to 1.43 and the cost from 9.6 to 11.7, and the two
# move against each other, together with the share of people told to act on $x_3$: a classifier on
# which acting on $x_3$ helps gives cheaper two-feature actions. The correlations over the ten seeds:

# %%
seeds[['cost x100', 'acts', 'x3 acted on %']].corr().round(2)

# %% [markdown]
# Against the chapter's targets (cost within 8 % of the paper's 9.82, acts within 0.15 of its 1.07):
# seeds 0 and 1 meet the cost target and miss acts; seeds 3 to 9 meet acts and miss the cost by 13 to
# 19 %. No seed meets both: the paper's pair lies off the trade-off our classifiers make. The data draws
# (classifier seed 0) move cost rather than acts.

# %%
seeds['cost target met'] = (seeds['cost x100'] / paper['paper cost x100'] - 1).abs() < 0.08
seeds['acts target met'] = (seeds['acts'] - paper['paper acts']).abs() < 0.15
seeds[['classifier seed', 'cost target met', 'acts target met']].set_index('classifier seed').T

# %% [markdown]
# ## Is triangle-nlin unusual?
#
# The same five classifier seeds on every SCM: how far does acts move with the classifier alone?

# %%
others = pd.DataFrame([run_row(n, 0, s) for n in SCM_NAMES if n != NAME for s in range(5)])
every = pd.concat([seeds[seeds['classifier seed'] < 5], others])
summary = every.groupby('scm', sort=False)[['cost x100', 'acts']].agg(['min', 'max'])
summary.columns = [f'{c} {s}' for c, s in summary.columns]                    # readable headers
summary = summary.join(PAPER_ORACLE[['paper cost x100', 'paper acts']])
summary['acts max − min'] = summary['acts max'] - summary['acts min']
summary['paper acts within seeds ± 0.15'] = ((summary['paper acts'] >= summary['acts min'] - 0.15)
                                             & (summary['paper acts'] <= summary['acts max'] + 0.15))
save_table(summary.round(3), 'oracle_acts_by_classifier_seed')
summary.round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for ax, col in zip(axes, ['acts', 'cost x100']):
    sns.stripplot(data=every, x='scm', y=col, order=list(SCM_NAMES), ax=ax, color='#1b9e77', size=5,
                  jitter=0.15)
    ax.scatter(range(len(SCM_NAMES)), PAPER_ORACLE.loc[list(SCM_NAMES), f'paper {col}'], marker='_', s=400,
               color='#d95f02', label='paper Table 1', zorder=3)
    ax.set_xlabel(''); ax.tick_params(axis='x', rotation=30)
    ax.set_title(f'oracle {col}, original convention')
axes[0].legend()
fig.suptitle('five SGD classifier seeds per SCM (dots) against the paper (bars)', y=1.02)
save_figure(fig, 'oracle_acts_by_classifier_seed')
plt.show()

# %% [markdown]
# Over five classifier seeds, triangle-nlin's acts move by 0.30; no other SCM's by more than 0.1.
#
# ## Answer
#
# Not the grid and not ties, but the classifier draw: on triangle-nlin alone the oracle's acts depend on
# how the classifier learnt the weak $0.1\,x_3^2$ term of the label, so that ten SGD seeds give acts
# from 1.03 to 1.43 and, in the opposite direction, costs from 11.7 to 9.6; the chapter's classifier
# (seed 0) matches the paper's cost and misses its acts by 0.33, and no seed matches both.

# %%
assert float(ties['within 1.05x']) < 10                                  # not ties
assert seeds['acts'].max() - seeds['acts'].min() > 0.25                 # the classifier seed moves acts
assert seeds['cost target met'].any() and seeds['acts target met'].any()
assert not (seeds['cost target met'] & seeds['acts target met']).any()  # but no seed meets both
assert summary['acts max − min'].drop(NAME).max() < 0.1 < summary.loc[NAME, 'acts max − min']
