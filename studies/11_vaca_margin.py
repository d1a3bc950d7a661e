# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
# ---

# %% [markdown]
# # Study: which hinge margin for CARMA with VACA?
#
# **Question.** CARMA only ever sees its causal model, and VACA's counterfactuals are many times less
# accurate than the flow's (chapter 11, `figures/vaca_vs_flow.md`). With the margin of the paper's VACA
# row of Table 5 ($\varepsilon = 0.003$), how many of CARMA's actions fail when replayed in the true SCM,
# and which margin restores causal validity, at what cost?
#
# *Not part of the course, not run by CI.* It presents two committed measurements and re-runs neither.

# %% [markdown]
# ## Measurement 1: our training recipe of commit f85657b
#
# At commit f85657b, on loan's **validation** people (never the test people the chapters report), with
# `python tools/sweep_hparam.py loan margin 0.003,0.03,0.1 --variant vaca`: paper profile, 4 CARMA seeds
# per margin, the VACA row of Table 5 otherwise unchanged, trained with our additions of that time — above
# all the classifier temperature (the hinge saw $\sigma(\text{logit}/T)$ with $T = \max(1, 4\cdot$ median
# |logit| of the rejected people$)$) — and the Adam-trained classifier of that time. The sweep's printout
# was not saved; the numbers are those chapter 11 reported from it at that commit. It is not re-run here.

# %%
import os
import re

import pandas as pd
from carma_nb.core import project_root, save_table

STUDY = project_root() / 'figures' / 'studies'
os.environ['CARMA_FIGURE_DIR'] = str(STUDY)   # studies write here only

ours = pd.DataFrame({
    'margin ε': [0.003, 0.03, 0.1],
    'causal validity %, lowest seed': [91.4, 99.4, 100.0],
    'causal validity %, highest seed': [93.9, 99.6, 100.0],
    'cost / oracle cost': [0.82, 1.08, 3.2],
}).set_index('margin ε')
save_table(ours, 'vaca_margin')
ours

# %% [markdown]
# With that recipe, ten times Table 5's margin (0.03) brought every seed above 99 % for a cost just above
# the oracle's, and the sweep's selection rule (cost + 1 − validity) chose it.
#
# ## Measurement 2: the paper's algorithm and the original code's classifier
#
# The library now trains the paper's algorithm by default (one candidate per seed, no polishing, no
# classifier temperature) and the classifier the original code trained (plain SGD). Does the wider margin
# still work? `studies/tools/vaca_margin.py 0.003 0.03 0.1 0.3` (paper profile, 10 seeds per margin,
# about five minutes of training per margin on this machine; its output is committed as
# `figures/studies/vaca_margin_paper_algorithm.txt`) serves loan's 2 321 rejected **test** people. It only
# describes: no setting is chosen from it.

# %%
COLUMNS = [f'{m} {s}' for m in ('cost x100', 'validity %', 'coverage %', 'acts')
           for s in ('mean', 'min', 'max')]

def parse_margins(text: str) -> pd.DataFrame:
    "The per-margin table printed by studies/tools/vaca_margin.py."
    rows = {float(m): [float(v) for v in rest.split()]
            for m, rest in re.findall(r'^(\d+\.\d+)\s+(.*)$', text, re.M)}
    df = pd.DataFrame.from_dict(rows, orient='index', columns=[*COLUMNS, 'cost / oracle cost'])
    return df.rename_axis('margin ε')

paper_alg = parse_margins((STUDY / 'vaca_margin_paper_algorithm.txt').read_text())
paper_alg[['validity % mean', 'validity % min', 'validity % max', 'cost / oracle cost', 'coverage % mean']]

# %%
assert list(paper_alg.index) == [0.003, 0.03, 0.1, 0.3]
assert (paper_alg['validity % mean'] < 99).all() and paper_alg['validity % min'].max() < 95
assert (paper_alg['coverage % mean'] > 99.9).all()            # valid under VACA, not in the true SCM

# %% [markdown]
# ## Reading it
#
# - Under VACA almost every action is valid (coverage above 99.9 % at every margin); replayed in the true
#   SCM, 2–9 % of them are not. That is VACA's counterfactual error, which CARMA cannot see.
# - With our recipe of f85657b, a margin of 0.03 was enough. The classifier temperature made the hinge
#   act on $\sigma(\text{logit}/T)$ with a large $T$, so a margin on that probability asked for a far larger
#   margin in the classifier's logit than the same number does on $\sigma(\text{logit})$.
# - With the paper's algorithm, the margin has to grow thirty- to a hundredfold before validity moves much:
#   at 0.3 it is 98.3 % on average (lowest seed 93.1 %) for 1.29× the oracle's cost, and the seeds spread
#   widely at every margin. None reaches the paper's "about 99 %" (Fig. 3) on every seed.
#
# **Answer.** A wider hinge margin keeps CARMA-with-VACA's actions valid in the true SCM only together
# with our classifier temperature (0.03 gave 99.4–99.6 % at 1.08× the oracle's cost); with the paper's
# algorithm and the original code's classifier even 0.3 leaves 98.3 % on average (seeds from 93.1 %) at
# 1.29× the oracle's cost.
