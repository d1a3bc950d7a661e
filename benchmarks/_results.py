"""Shared helpers of the benchmark scripts: timing and rewriting one section of RESULTS.md."""

import os
import platform
import statistics
import time
from pathlib import Path

import torch

from carma_nb.core import atomic_write

RESULTS = Path(__file__).parent / 'RESULTS.md'


def median_time(fn, repeat=7):
    """Median wall time of `repeat` calls after one warm-up call (seconds)."""
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def machine_note(claim='ratios are the claim'):
    """Two lines for RESULTS.md: the machine, and that it is shared."""
    return f"Machine: {machine()}.\nShared with other work: absolute times are noisy; {claim}."


def machine():
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}"
    )


def write_section(key, title, text):
    """Replace (or append) the section between <!-- key start --> and <!-- key end --> of RESULTS.md."""
    old = RESULTS.read_text() if RESULTS.exists() else '# Benchmark results\n'
    head, sep, rest = old.partition(f'<!-- {key} start -->')
    tail = rest.partition(f'<!-- {key} end -->')[2] if sep else ''
    section = f"<!-- {key} start -->\n## {title}\n\n{text}\n<!-- {key} end -->"
    with atomic_write(RESULTS, 'w') as f:
        f.write(head.rstrip('\n') + '\n\n' + section + ('\n\n' + tail.lstrip('\n') if tail.strip() else '\n'))
