"""Where the time of `carma-nb reproduce --profile paper` goes: the job times of the last paper run.

Reads `figures/results_paper.csv` (written by `carma-nb reproduce --profile paper`; every row carries its
job's wall time, `job seconds`, measured in the worker that ran it) and prints, per job, its time, then
the total single-core time, the longest job, and the least wall time any schedule on N workers can reach
(the larger of total / N and the longest job), before the chapters run. It re-runs nothing: the times
are those of the run that wrote the file, on this shared 2-core machine, and noisy.
Target (issue 24): the whole paper in ≤ 30 minutes here, from an empty cache, with 2 workers.

    python benchmarks/bench_reproduce.py [--workers 2] [--write]
"""

import argparse

import pandas as pd

from _results import machine_note, write_section
from carma_nb.core import project_root


def job_times(results):
    """One row per job: SCM, method, fraction and its wall time (s), longest first."""
    jobs = results.groupby(['scm', 'method', 'fraction'], as_index=False)['job seconds'].max()
    return jobs.sort_values('job seconds', ascending=False).reset_index(drop=True)


def main(workers, write):
    jobs = job_times(pd.read_csv(project_root() / 'figures' / 'results_paper.csv'))
    total, longest = jobs['job seconds'].sum(), jobs['job seconds'].iloc[0]
    bound = max(total / workers, longest)
    rows = [
        f"| {r.scm} | {r.method} | {r.fraction:g} | {r['job seconds']:.0f} |"
        for _, r in jobs.head(8).iterrows()
    ]
    text = '\n'.join(
        [
            'Job times of the last `carma-nb reproduce --profile paper` (the `job seconds` of',
            '`figures/results_paper.csv`; nothing is re-run). The eight longest jobs:',
            '',
            '| SCM | method | fraction | job seconds |',
            '|---|---|---|---|',
            *rows,
            '',
            f'{len(jobs)} jobs, {total:.0f} s of single-core time in all; the longest, {jobs.scm.iloc[0]} '
            f'{jobs.method.iloc[0]}, {longest:.0f} s.',
            f'No schedule on {workers} workers finishes the jobs in less than {bound / 60:.0f} min',
            f'(the larger of total / {workers} and the longest job), before the chapters run, and this',
            'is a lower bound for an empty cache: jobs that found their models in the cache took less',
            f'(the fastest job: {jobs["job seconds"].min():.2f} s). Target: the whole paper in ≤ 30 min.',
            '',
            machine_note('these times were measured by the run that wrote the file'),
        ]
    )
    print(text)
    if write:
        write_section('reproduce', 'Reproducing the paper (`python benchmarks/bench_reproduce.py`)', text)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--write', action='store_true', help='rewrite its section of benchmarks/RESULTS.md')
    a = ap.parse_args()
    main(a.workers, a.write)
