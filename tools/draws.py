"""Shared by the tools that ask how a number depends on the one draw of data it was measured on."""
import time
from typing import Callable

import torch


def over_draws(label: str, n: int, score: Callable[[int], float], close: Callable[[torch.Tensor], torch.Tensor],
               close_text: str) -> torch.Tensor:
    "Print `score(pool_seed)` for pool seeds 0 … n−1, then their spread and how many are `close` (described by `close_text`)."
    values = []
    for draw in range(n):
        t = time.perf_counter()
        values.append(score(draw))
        print(f'  pool seed {draw:>3}: {values[-1]:.4f}   ({time.perf_counter() - t:.0f} s)', flush=True)
    v = torch.tensor(values)
    print(f'{label}: min {v.min():.4f}, median {v.median():.4f}, max {v.max():.4f}; '
          f'{int(close(v).sum())} of {n} draws {close_text}')
    return v
