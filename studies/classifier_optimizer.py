# %% [markdown]
# # Study: which optimiser trained the paper's classifiers?
#
# **Question.** The paper's appendix says its downstream classifiers were trained with Adam; the
# original code trains them with plain SGD (no momentum, learning rate $10^{-3}$, batch 256, 500
# epochs). Which of the two reproduces the paper's validation accuracies (0.98, 0.98, 0.99, 0.91,
# 0.98, 0.97, 0.92), and how much does the comparison depend on the one draw of data a classifier is
# trained on?
#
# Chapter 3 trains with SGD; this study is why. It is not part of the course: it is run by hand at
# the paper profile (never by CI) and writes its tables and figures to `figures/studies/`. Section 3
# reads the committed output of a 31-draw sweep (`tools/classifier_draws.py`, about 40 minutes)
# instead of re-running it.

# %%
import os
import sys

import numpy as np
import pandas as pd
import seaborn as sns
import torch
import matplotlib.pyplot as plt
from fastcore.test import test_eq, test_close

from carma_nb.classifier import (ClassifierFit, PAPER_CLF_ACCURACY, PAPER_REJECTED_TEST, accuracy,
                                 train_classifier)
from carma_nb.core import get_profile, project_root, save_figure, save_table
from carma_nb.data import make_pools
from carma_nb.scm import SCM_NAMES

sys.path.insert(0, str(project_root()/'studies'/'tools'))
from draws import read_draws

os.environ['CARMA_FIGURE_DIR'] = str(project_root()/'figures'/'studies')   # this study's outputs
profile = get_profile('paper')
OPTIMIZERS = ('sgd', 'adam')

# %% [markdown]
# ## 1. Both optimisers on the course's data
#
# Every SCM's classifier trained twice on chapter 2's classifier pool (pool seed 0, weight seed 0),
# once per optimiser, everything else equal; the paper's numbers alongside.

# %%
def optimizer_row(name: str) -> dict:
    "Validation accuracy and rejected recourse-test people of both optimisers' classifiers of `name`."
    pools, row = make_pools(name), {'scm': name}
    for opt in OPTIMIZERS:
        clf = train_classifier(name, pools.classifier, profile,
                               fit=ClassifierFit(optimizer=opt), verbose=False)
        row[f'{opt} val acc'] = accuracy(clf, pools.classifier.val)
        with torch.no_grad(): row[f'{opt} rejected'] = int((~clf.decide(pools.recourse.test.x)).sum())
    return row

both = pd.DataFrame([optimizer_row(n) for n in SCM_NAMES]).set_index('scm')
both['paper val acc'] = pd.Series(PAPER_CLF_ACCURACY)
for opt in OPTIMIZERS: both[f'{opt} − paper (pts)'] = 100 * (both[f'{opt} val acc'] - both['paper val acc'])
both['paper rejected'] = pd.Series(PAPER_REJECTED_TEST)
both = both[['sgd val acc', 'adam val acc', 'paper val acc', 'sgd − paper (pts)', 'adam − paper (pts)',
             'sgd rejected', 'adam rejected', 'paper rejected']]
save_table(both.round(4), 'classifier_optimizer')
both.round(4)

# %%
gap = both[['sgd − paper (pts)', 'adam − paper (pts)']].abs()
assert gap['sgd − paper (pts)'].mean() < gap['adam − paper (pts)'].mean() / 2, gap
test_eq(int((gap['sgd − paper (pts)'] <= 0.7).sum()), 5)                        # SGD: five within 0.7 points
test_eq(both['adam − paper (pts)'].agg(['min', 'max']).round(1).tolist(), [0.9, 7.6])   # Adam: above, by 0.9–7.6
test_eq(set(both['sgd val acc'].nsmallest(2).index), {'loan', 'collider-nlin'})  # the paper's two weakest
gap.mean().round(2)

# %% [markdown]
# With SGD five of the seven classifiers land within 0.7 points of the paper's accuracy; loan (1.8
# below) and collider-nlin (1.9 above), the paper's own two weakest classifiers, are the exceptions.
# With Adam every classifier is more accurate than the paper's, by 0.9 to 7.6 points.
#
# ## 2. Is it the seed?
#
# Five weight initialisations (and batch orders) of the two SGD classifiers furthest from the paper.

# %%
seed_acc = {}
for name in ('loan', 'collider-nlin'):
    pool = make_pools(name).classifier
    for s in range(5):
        clf = train_classifier(name, pool, profile, fit=ClassifierFit(optimizer='sgd'), seed=s, verbose=False)
        seed_acc[(name, s)] = accuracy(clf, pool.val)
seeds = pd.Series(seed_acc).unstack()
seeds = seeds.assign(mean=seeds.mean(axis=1), paper=[PAPER_CLF_ACCURACY[n] for n in seeds.index])
seed_names = lambda c: f'seed {c}' if isinstance(c, (int, np.integer)) else c
save_table(seeds.rename(columns=seed_names).rename_axis('scm').round(4), 'classifier_sgd_seeds')
seeds.round(4)

# %%
test_eq(seed_acc[('loan', 0)], both.loc['loan', 'sgd val acc'])          # seed 0 is section 1's model
within = (seeds[list(range(5))].sub(seeds['paper'], axis=0).abs() <= 0.015).sum(axis=1)
assert ((seeds['mean'] - seeds['paper']).abs() > 0.015).all(), seeds       # the means stay outside 1.5 points
test_eq(within.tolist(), [1, 1])                                             # one seed of each comes within

# %% [markdown]
# The seed moves each accuracy by less than a point, and the means stay outside 1.5 points of the
# paper's. So it is not the seed.
#
# ## 3. Is it the draw of data?
#
# The seeds above all train on one draw of the classifier pool, and so did the paper's one classifier
# per SCM. `studies/tools/classifier_draws.py SCM --optimizer OPT --draws 31` trains the paper-profile
# classifier (seed 0) on 31 independent draws of the pool (pool seeds 0–30) and scores each on its own
# validation split. Its fourteen runs took about 40 minutes on this 2-core machine; their output is
# `figures/studies/classifier_draws.txt`. Draw 0 is the data of sections 1 and 2, which the cell below
# checks: to the last digit for SGD, and to 0.0004 for Adam, whose runs predate the rule that every
# trainer runs on one thread (chapter 0), so loan's Adam classifier differs in the fourth decimal.

# %%
draws = read_draws(project_root()/'figures'/'studies'/'classifier_draws.txt')
draws[['scm', 'optimizer']] = draws['run'].str.extract(r'^(\S+) \((\w+)\)$')
draws['paper'] = draws['scm'].map(PAPER_CLF_ACCURACY)
draws['− paper (pts)'] = (100 * (draws['value'] - draws['paper'])).round(2)   # as printed: 4 decimals
by_run = draws.groupby(['optimizer', 'scm'], sort=False)
spread = pd.DataFrame({'draw 0': by_run['value'].first(), 'min': by_run['value'].min(),
                       'median': by_run['value'].median(), 'max': by_run['value'].max(),
                       'paper': by_run['paper'].first(), 'median − paper (pts)': by_run['− paper (pts)'].median(),
                       'draws within 1.5 pts': by_run['− paper (pts)'].apply(lambda g: int((g.abs() <= 1.5).sum()))})
spread = spread.loc[list(OPTIMIZERS)].reset_index()
save_table(spread.round(4), 'classifier_draws_summary')
spread.round(4)

# %%
test_eq(set(draws.groupby('run').size()), {31})
for opt, eps in (('sgd', 6e-5), ('adam', 6e-4)):        # the file's draw 0 is section 1's classifiers
    d0 = spread[spread['optimizer'] == opt].set_index('scm')['draw 0']
    test_close(d0.reindex(both.index).values, both[f'{opt} val acc'].values, eps=eps)
sg, ad = (spread[spread['optimizer'] == o].set_index('scm') for o in OPTIMIZERS)
assert (sg['median − paper (pts)'].abs() <= 1.5).all(), sg                  # SGD: every SCM within on the median draw
test_eq(sg.loc[sg['draws within 1.5 pts'] < 31, 'draws within 1.5 pts'].to_dict(), {'collider-nlin': 23, 'loan': 27})
test_eq(set(ad.index[ad['draws within 1.5 pts'] == 31]), {'collider-lin'})
test_eq(ad.loc[['triangle-lin', 'chain-lin'], 'draws within 1.5 pts'].tolist(), [1, 1])
test_eq(ad['median − paper (pts)'].agg(['min', 'max']).round(1).tolist(), [0.8, 7.4])
sgd_gap = draws[draws['optimizer'] == 'sgd'].assign(gap=lambda d: d['− paper (pts)'].abs())
worse = {n: int((d['gap'] > d.loc[d['pool seed'] == 0, 'gap'].item()).sum()) for n, d in sgd_gap.groupby('scm')}
test_eq((worse['collider-nlin'], worse['loan']), (0, 1))                    # draws further from the paper than draw 0

# %% [markdown]
# Each point below is one draw of data; the band is ±1.5 points around the paper's accuracy.

# %%
fig, ax = plt.subplots(figsize=(9, 3.6))
sns.stripplot(data=draws, x='scm', y='− paper (pts)', hue='optimizer', hue_order=list(OPTIMIZERS),
              dodge=True, size=3, alpha=.7, ax=ax)
ax.axhspan(-1.5, 1.5, color='grey', alpha=.15, lw=0)
ax.axhline(0, color='k', lw=.8)
ax.set_xlabel(''); ax.set_ylabel('val accuracy − paper (points)')
ax.set_title('classifiers on 31 draws of data: plain SGD (original code) and Adam (paper appendix)', fontsize=10)
save_figure(fig, 'classifier_draws')
plt.show()

# %% [markdown]
# - **With SGD, every SCM is within 1.5 points of the paper on the median draw.** Five SCMs are within
#   on all 31 draws; loan on 27 and collider-nlin on 23.
# - **Draw 0, the course's data, is among the worst draws for exactly those two**: collider-nlin's
#   furthest of the 31 from the paper, and loan's second furthest. So the two misses of section 1 come
#   from the data, not from the way we train.
# - **With Adam the gap is the optimiser.** Only collider-lin is within 1.5 points on every draw;
#   triangle-lin and chain-lin come within on one draw each, the other four SCMs on none. On the median
#   draw Adam's accuracies sit 0.8 to 7.4 points above the paper's.
#
# ## 4. What the optimiser changes downstream
#
# How confident each loan classifier is about the people recourse will serve: the median logit of
# the people it rejects in the recourse training split.

# %%
pools = make_pools('loan')
rec_x = pools.recourse.train.x
confidence = {}
for opt in OPTIMIZERS:
    c = train_classifier('loan', pools.classifier, profile, fit=ClassifierFit(optimizer=opt), verbose=False)
    with torch.no_grad(): lg = c.logits(rec_x[~c.decide(rec_x)])
    confidence[opt] = {'rejected people': len(lg), 'median logit': float(lg.median()),
                       'median p': float(torch.sigmoid(lg).median())}
confidence = pd.DataFrame(confidence).T.rename_axis('optimizer')
save_table(confidence, 'classifier_confidence_loan', profile)
assert confidence.loc['adam', 'median logit'] < -30 < -5 < confidence.loc['sgd', 'median logit'], confidence
confidence

# %% [markdown]
# The SGD classifier, still learning after 500 epochs (chapter 3's curves), is far less sure of its
# rejections: a median logit of −2.8 (p ≈ 0.06) against −71 for Adam's (p ≈ 10⁻³¹). Every recourse
# method moves people across this classifier's boundary, and CARMA learns from the gradient of its
# probability, which is vanishingly small at a logit of −71. So the choice decides more than chapter 3's
# accuracies: which people are rejected, how far they are from the boundary, and what CARMA can learn.
#
# ## Answer
#
# The paper's accuracies are those of classifiers trained with plain SGD, as the original code does,
# that had not finished learning: SGD reproduces them within 1.5 points on the median of 31 draws of
# data on every SCM, while Adam, which the paper's appendix names, makes every classifier 0.8 to 7.4
# points more accurate and puts its rejected people 25 times further from the decision boundary (in
# logits).
