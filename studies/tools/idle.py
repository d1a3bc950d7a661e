"""Acts that change nothing: per CARMA model, the share of people acting on each feature, the share whose act
is idle (its latent shift is below a tolerance, so the feature keeps the value it would have had), and the
share whose act changes something. Used by studies/10_preference_savings_share and preference_draws.py;
not part of the library (only these studies use it)."""

import pandas as pd
import torch

from carma_nb.improved import idle_acts


def idle_summary(
    models: dict,  # name -> trained CARMA models (e.g. one per seed)
    people: torch.Tensor,  # (n, D) the people they serve
    tol: float = 0.05,  # an act is idle when its latent shift is below this
) -> pd.DataFrame:
    "Per entry of `models`, averaged over its models: acts, idle acts, per feature % acting, idle, changing."
    rows = []
    for method, ms in models.items():
        for m in ms:
            mask, idle = idle_acts(m, people, tol)
            kinds = (('acting', mask), ('idle', idle), ('changing', mask & ~idle))
            share = {k: 100 * t.float().mean(0) for k, t in kinds}
            feats = m.actionable.nonzero().flatten().tolist()
            rows.append(
                {
                    'method': method,
                    'acts': mask.sum(1).float().mean().item(),
                    'idle acts': idle.sum(1).float().mean().item(),
                    **{f'{m.names[j]} {k} %': v[j].item() for j in feats for k, v in share.items()},
                }
            )
    out = pd.DataFrame(rows).groupby('method', sort=False).mean()
    out.insert(2, 'acts that change something', out['acts'] - out['idle acts'])
    return out
