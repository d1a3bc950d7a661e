"""Shared by the studies that ask how a number depends on the one draw of data it was measured on.

`over_draws` prints one line per draw of the data and a summary line; the studies commit that output under
`figures/studies/` and read it back with `read_draws`, instead of copying numbers by hand:

    collider-lin: counterfactual error …            (a header)
      pool seed   0: 0.0230   (7 s)                 (one line per draw)
    collider-lin: min 0.0205, median …              (a summary that starts with the run's label)
"""

import re
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch


def over_draws(
    label: str,
    n: int,
    score: Callable[[int], float],
    close: Callable[[torch.Tensor], torch.Tensor],
    close_text: str,
) -> torch.Tensor:
    "Print `score(pool_seed)` for pool seeds 0 … n−1, then their spread and how many are `close` (`close_text`)."
    values = []
    for draw in range(n):
        t = time.perf_counter()
        values.append(score(draw))
        print(f'  pool seed {draw:>3}: {values[-1]:.4f}   ({time.perf_counter() - t:.0f} s)', flush=True)
    v = torch.tensor(values)
    print(
        f'{label}: min {v.min():.4f}, median {v.median():.4f}, max {v.max():.4f}; '
        f'{int(close(v).sum())} of {n} draws {close_text}'
    )
    return v


_DRAW = re.compile(r'^\s+pool seed\s+(\d+):\s+([-+0-9.eE]+)')
_SUMMARY = re.compile(r'^(\S.*?): min ')


def read_draws(path) -> pd.DataFrame:
    "One row per draw of every complete run in the file `path` printed by `over_draws`: run label, pool seed, value."
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run the study tool that writes it (see the study that reads it)"
        )
    rows, pending = [], []
    for line in path.read_text().splitlines():
        if m := _DRAW.match(line):
            pending.append((int(m[1]), float(m[2])))
        elif m := _SUMMARY.match(line):
            rows += [{'run': m[1], 'pool seed': seed, 'value': v} for seed, v in pending]
            pending = []
    if not rows:
        raise ValueError(
            f"{path} holds no complete run (per-draw lines followed by a 'label: min …' summary line)"
        )
    return pd.DataFrame(rows)


def _self_test():
    "The parser on a two-run file, a run cut off before its summary, and a missing file."
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / 'draws.txt'
        log.write_text(
            'collider-lin: counterfactual error …\n  pool seed   0: 0.0230   (7 s)\n'
            '  pool seed   1: 0.0205   (6 s)\ncollider-lin: min 0.0205, median 0.0205, max 0.0230\n'
            'loan (sgd): validation accuracy …\n  pool seed   0: 0.9024   (6 s)\n'
            'loan (sgd): min 0.9024, median 0.9024, max 0.9024\n  pool seed   0: 0.5   (1 s)\n'
        )
        runs = read_draws(log)
        assert runs['run'].tolist() == ['collider-lin', 'collider-lin', 'loan (sgd)'], runs
        assert runs['value'].tolist() == [0.0230, 0.0205, 0.9024], runs
        for text, missing in (('  pool seed   0: 0.0230   (7 s)\n', False), ('', True)):
            if missing:
                log.unlink()
            else:
                log.write_text(text)
            try:
                read_draws(log)
            except (ValueError, FileNotFoundError) as e:
                assert ('does not exist' if missing else 'no complete run') in str(e)
            else:
                raise AssertionError('read_draws accepted a file without a complete run')


if __name__ == '__main__':
    _self_test()
    print('draws.py: read_draws parses complete runs and refuses incomplete or missing files')
