"""Archived with the study `studies/carma_additions.ipynb`: written for the CARMA API before chapter 9's
recipes (hyperparameter keys temperature, shift_scale, restarts, refine_epochs, polish_epochs), it is
the record of how chapter 9's settings were chosen. To re-run a sweep, express each setting as a
chapter-8 `Recipe` and pass it as `CarmaOptions(recipe=...)`.

Diagnostic: CARMA trained with the TRUE SCM as its causal model, vs with the learned flow (validation people).

CARMA is only as good as the causal model it differentiates through. To separate "the flow is slightly
wrong" from "the mask/action networks do not find cheap actions", this script gives CARMA a perfect
causal model: the SCM's own structural equations, behind the same small interface the flow and VACA
implement (`abduct`, `latent_counterfactual`, `latent_size`). Its latents are the SCM's exogenous noise,
standardised per node so the action network sees the same scale as with the flow's N(0, 1) latents.
Everything else (hyperparameters, restarts, seeds, people, oracle) is as in chapter 8, and the people
are the rejected VALIDATION people of the recourse pool (the test people are never used here).

    python tools/carma_true_scm.py triangle-nlin --seeds 4 --set polish_epochs=0   # chapter 8's diagnostic

Only for additive-noise SCMs whose equations are written in torch (the six synthetic ones).
"""

import argparse
import time

import pandas as pd
import torch
from torch import nn

from carma_nb.training import CarmaOptions, train_carma_seeds
from carma_nb.core import markdown_table
from carma_nb.flow import fit_flow
from carma_nb.scm import get_scm
from sweep_hparam import (
    hparam_value,
    score_models,
    validation_setup,
)  # tools/ is on the path when this runs as a script


class TrueSCMModel(nn.Module):
    "The true SCM behind CARMA's causal-model interface: latents are its standardised exogenous noise."

    latent_size = 1
    hidden = ()
    config = None

    def __init__(self, scm, x_train: torch.Tensor):
        super().__init__()
        self.true = get_scm(scm)
        self.scm, self.names = self.true.name, self.true.names
        u = self.true.abduct(x_train)
        self.register_buffer('u_mean', u.mean(0))
        self.register_buffer('u_std', u.std(0).clamp_min(1e-6))

    def abduct(self, x):
        return (self.true.abduct(x) - self.u_mean) / self.u_std

    def latent_counterfactual(self, z, mask, delta):
        return self.true.generate((z + mask.to(z.dtype) * delta) * self.u_std + self.u_mean)

    def freeze(self):
        return self.eval()


def main(name, seeds, fixed=None):
    torch.set_num_threads(1)
    ref, problem, people, ocost = validation_setup(name)
    models = {
        'flow': fit_flow(name, ref.pools.causal, 'paper', verbose=False),
        'true SCM': TrueSCMModel(name, ref.pools.recourse.train.x),
    }
    rows = []
    for label, cm in models.items():
        t0 = time.perf_counter()
        trained = train_carma_seeds(
            name,
            ref.clf,
            cm,
            ref.pools.recourse,
            range(seeds),
            CarmaOptions(hparams=fixed or None, profile='paper', cache=label == 'flow', verbose=False),
        )
        df = score_models(trained, problem, ref.clf, people)
        rows.append(
            {
                'causal model': label,
                'cost / oracle': df['cost x100'].mean() / ocost,
                'min seed': df['cost x100'].min() / ocost,
                'max seed': df['cost x100'].max() / ocost,
                'validity %': df['validity %'].mean(),
                'acts': df['acts'].mean(),
                'seconds': time.perf_counter() - t0,
            }
        )
        print(rows[-1], flush=True)
    print(
        f"\n{name}, {len(people)} rejected validation people, {seeds} seeds, overrides {fixed or {}}, oracle "
        f"cost x100 {ocost:.2f}\n"
    )
    print(markdown_table(pd.DataFrame(rows).set_index("causal model"), ".3f"))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('scm')
    ap.add_argument('--seeds', type=int, default=4)
    ap.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='a numeric hyperparameter override (repeatable)',
    )
    a = ap.parse_args()
    fixed = {k: hparam_value(k, v) for k, v in (kv.split('=', 1) for kv in a.set)}
    main(a.scm, a.seeds, fixed)
