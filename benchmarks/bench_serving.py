"""Serving a file of millions of applicants with `carma-nb recommend`, chunk by chunk.

  1. write N loan applicants (default 10 000 000) drawn from the SCM to a CSV file, a million at a time,
     and the same applicants to a Parquet file;
  2. run `carma-nb recommend` on each in a process of its own, with a loan CARMA model (paper profile,
     improved recipe: it drops idle acts, the slower setting), CSV to CSV and Parquet to Parquet; report
     the wall time from process start to exit, rows per second, and the process's peak memory (its
     VmHWM, the high-water mark of its resident memory).
Targets (issue 24): ≥ 100 000 rows per second end to end and ≤ 500 MB peak for 10 000 000 rows.
Absolute times on this shared 2-core machine are noisy.

    python benchmarks/bench_serving.py [--rows N] [--write]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from _results import machine_note, write_section
from carma_nb.carma import save_carma
from carma_nb.flow import fit_flow
from carma_nb.oracle import oracle_reference
from carma_nb.scm import get_scm
from carma_nb.training import train_carma


def write_applicants(n, csv_path, parquet_path, block=1_000_000):
    """N applicants of loan's SCM, written a block at a time (the generator's memory stays bounded)."""
    scm, torch_gen = get_scm('loan'), torch.Generator().manual_seed(0)
    writer = None
    with open(csv_path, 'w') as f:
        for start in range(0, n, block):
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=torch_gen)))
            x = scm.sample(min(block, n - start))[0]
            df = pd.DataFrame(x.numpy(), columns=scm.names)
            df.to_csv(f, index=False, header=start == 0)
            table = pa.Table.from_pandas(df, preserve_index=False)
            writer = writer or pq.ParquetWriter(parquet_path, table.schema)
            writer.write_table(table)
    writer.close()


# the command, then its own peak memory: VmHWM, the high-water mark of this program's memory since it
# started (ru_maxrss would also count the benchmark's memory, which the child has before it execs)
CHILD = """import sys
from carma_nb.experiments import main
code = main()
hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))
print('VmHWM', int(hwm.split()[1]) * 1024, file=sys.stderr)
sys.exit(code)"""


def serve(model, inp, out):
    """Wall time, peak RSS (MB) and output of `carma-nb recommend` in a process of its own."""
    args = ['recommend', '--scm', 'loan', '--model', str(model), '--input', str(inp), '--output', str(out)]
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', CHILD, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(r.stderr)
    peak = int(r.stderr.rpartition('VmHWM ')[2]) / 1e6
    return seconds, peak, r.stdout.strip()


def main(rows, write):
    ref = oracle_reference('loan', 'paper')
    flow = fit_flow('loan', ref.pools.causal, 'paper', verbose=False)
    model = train_carma(
        'loan', ref.clf, flow, ref.pools.recourse, recipe='improved', profile='paper', verbose=False
    )
    lines = [
        machine_note('ratios and rates vary from run to run'),
        '',
        f"{rows:,} loan applicants; `carma-nb recommend` in a process of its own; the model's recipe: "
        'improved.',
        '',
        '| input → output | input size | time | rows per second | peak memory (RSS) | targets |',
        '|---|---|---|---|---|---|',
    ]
    with tempfile.TemporaryDirectory(dir=os.environ.get('BENCH_TMP')) as d:
        d = Path(d)
        save_carma(model, d / 'carma.pt')
        t0 = time.perf_counter()
        write_applicants(rows, d / 'people.csv', d / 'people.parquet')
        print(f'wrote the applicants in {time.perf_counter() - t0:.0f} s', file=sys.stderr)
        for fmt in ('csv', 'parquet'):
            inp = d / f'people.{fmt}'
            seconds, peak, said = serve(d / 'carma.pt', inp, d / f'actions.{fmt}')
            print(said, file=sys.stderr)
            lines.append(
                f'| {fmt} → {fmt} | {inp.stat().st_size / 2**20:,.0f} MiB | {seconds:.1f} s | '
                f'{rows / seconds:,.0f} | {peak:,.0f} MB | ≥ 100 000 rows/s, ≤ 500 MB |'
            )
    text = '\n'.join(lines)
    print(text)
    if write:
        write_section('serving', 'Serving a file of applicants (loan, chunk by chunk)', text)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=10_000_000)
    ap.add_argument('--write', action='store_true', help='update benchmarks/RESULTS.md')
    a = ap.parse_args()
    main(a.rows, a.write)
