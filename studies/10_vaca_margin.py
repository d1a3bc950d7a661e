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
# accurate than the flow's (chapter 10, `figures/vaca_vs_flow.md`). With the margin of the paper's VACA
# row of Table 5 ($\varepsilon = 0.003$), how many of CARMA's actions fail when replayed in the true SCM,
# and which margin restores causal validity, at what cost?
#
# *Not part of the course, not run by CI.* This study presents a measurement made once; it does not
# re-run it.

# %% [markdown]
# ## How it was measured
#
# At commit f85657b, on loan's **validation** people (never the test people the chapters report),
# with `tools/sweep_hparam.py`:
#
# ```
# python tools/sweep_hparam.py loan margin 0.003,0.03,0.1 --variant vaca
# ```
#
# Paper profile, 4 CARMA seeds per margin, the VACA row of Table 5 otherwise unchanged (with the
# classifier temperature 4 CARMA's training used at that commit, and the Adam-trained classifier of that
# time). Each margin is scored by the selection rule of the sweep: mean cost + (1 − causal validity).
# The sweep's printout was not saved; the numbers below are those chapter 10 reported from it at that
# commit. Re-running takes about an hour on this machine, and the library's defaults have changed since
# (the paper's CARMA algorithm, SGD-trained classifiers), so this study does not re-run it.

# %%
import os
import pandas as pd
from carma_nb.core import project_root, save_table

os.environ['CARMA_FIGURE_DIR'] = str(project_root() / 'figures' / 'studies')   # studies write here only

margins = pd.DataFrame({
    'margin ε': [0.003, 0.03, 0.1],
    'causal validity %, lowest seed': [91.4, 99.4, 100.0],
    'causal validity %, highest seed': [93.9, 99.6, 100.0],
    'cost / oracle cost': [0.82, 1.08, 3.2],
}).set_index('margin ε')
save_table(margins, 'vaca_margin')
margins

# %% [markdown]
# ## Reading it
#
# - At Table 5's margin, 6–9 % of the people CARMA-with-VACA serves are not helped in the true SCM: an
#   action that clears the classifier's threshold by 0.0015 under VACA falls short once VACA's
#   counterfactual error is replaced by the truth. Its low cost (0.82× the oracle's, which knows the true
#   SCM) is the cost of actions that partly do not work.
# - Ten times the margin asks for a little more than the bare minimum under VACA. That absorbs most of
#   the error: validity above 99 % on every seed, for a cost just above the oracle's.
# - Another ten times overshoots: everyone is helped, at three times the oracle's cost.
#
# Both quantities the rule trades off move monotonically with the margin, so the choice is between 0.003
# (cheap, invalid for a few percent) and 0.03 (valid, slightly dearer); the selection rule picks 0.03.

# %%
m = margins
assert (m['causal validity %, lowest seed'].diff().dropna() > 0).all()       # validity rises with the margin
assert (m['cost / oracle cost'].diff().dropna() > 0).all()                    # and so does the cost
print('the margin with every seed at or above 99 % validity and the lowest cost:',
      m[m['causal validity %, lowest seed'] >= 99]['cost / oracle cost'].idxmin())

# %% [markdown]
# **Answer.** With VACA as its causal model, CARMA needs a hinge margin of about 0.03 — ten times Table
# 5's 0.003 — for its actions to stay valid in the true SCM (99.4–99.6 % instead of 91.4–93.9 %), at a
# cost of 1.08× the oracle's instead of 0.82×.
