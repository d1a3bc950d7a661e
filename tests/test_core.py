"""Profiles, figure locations, atomic checkpoints and the multi-process-safe model cache."""

import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from carma_nb import core
from carma_nb.core import (
    PROFILES,
    as_features,
    cached_checkpoint,
    cached_checkpoints,
    config_key,
    figure_dir,
    get_profile,
    load_checkpoint,
    save_checkpoint,
    save_figure,
    save_table,
)


def test_profile_switch(monkeypatch):
    monkeypatch.delenv('CARMA_PROFILE', raising=False)
    monkeypatch.setenv('IN_TEST', '1')
    assert get_profile().name == 'quick'
    monkeypatch.delenv('IN_TEST')
    assert get_profile().name == 'paper'
    monkeypatch.setenv('CARMA_PROFILE', 'quick')
    assert get_profile().name == 'quick'
    assert get_profile('paper') is PROFILES['paper']
    monkeypatch.setenv('CARMA_PROFILE', 'slow')
    with pytest.raises(ValueError, match="unknown profile 'slow'"):
        get_profile()


def test_paper_profile_uses_spec_numbers():
    p = PROFILES['paper']
    assert (p.seeds, p.clf_epochs, p.flow_epochs, p.vaca_epochs, p.carma_epoch_frac, p.oracle_people) == (
        10,
        500,
        1000,
        300,
        1.0,
        None,
    )


def test_quick_figures_never_overwrite_committed_ones(tmp_path, monkeypatch):
    monkeypatch.setenv('CARMA_HOME', str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    q = save_figure(fig, 'demo', profile='quick')
    p = save_figure(fig, 'demo', profile='paper')
    assert q == tmp_path / 'figures' / '_quick' / 'demo.png' and p == tmp_path / 'figures' / 'demo.png'
    assert q.read_bytes()[:4] == b'\x89PNG'
    t = save_table(pd.DataFrame({'a': [1.5]}), 'tab', profile='quick')
    assert t.read_text().strip() == 'a\n1.5' and (t.parent / 'tab.md').read_text().startswith('| a |')
    plt.close(fig)


def test_checkpoint_round_trip_and_safety(tmp_path):
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    path = save_checkpoint(
        tmp_path / 'a' / 'm.pt',
        m.state_dict(),
        {'scm': 'loan', 'hidden': (4,)},
        scaler={'mean': torch.arange(3.0), 'std': torch.ones(3)},
    )
    ck = load_checkpoint(path, expect={'scm': 'loan', 'hidden': [4]})
    m2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    m2.load_state_dict(ck.state_dict)
    x = torch.randn(5, 3)
    assert torch.equal(m(x), m2(x))
    assert torch.equal(ck.scaler['mean'], torch.arange(3.0))
    with pytest.raises(ValueError, match="has scm='loan' but scm='chain-lin' was requested"):
        load_checkpoint(path, expect={'scm': 'chain-lin'})
    with pytest.raises(FileNotFoundError, match='no checkpoint'):
        load_checkpoint(tmp_path / 'missing.pt')

    # a pickle carrying code is refused by weights_only=True
    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned',))

    torch.save(
        {'format': core.CKPT_FORMAT, 'config': '{}', 'state_dict': Evil(), 'scaler': None},
        tmp_path / 'evil.pt',
    )
    with pytest.raises(ValueError, match='not a readable carma_nb checkpoint'):
        load_checkpoint(tmp_path / 'evil.pt')
    with pytest.raises(TypeError, match='dict mapping names to tensors'):
        save_checkpoint(tmp_path / 'x.pt', {'w': [1, 2]}, {})
    assert sorted(p.name for p in (tmp_path / 'a').iterdir()) == ['m.pt']  # no temp file left behind


def _train_in_process(args):
    cache, log, barrier = args
    barrier.wait()  # both processes ask for the model at the same moment

    def train():
        with open(log, 'a') as f:
            f.write('trained\n')
        time.sleep(0.5)
        return {'w': torch.full((2,), float(os.getpid()))}, None

    ck = cached_checkpoint('race', {'scm': 'loan', 'seed': 0}, train, cache=cache)
    return ck.state_dict['w'].tolist()


def test_cache_trains_once_across_processes(tmp_path):
    log = tmp_path / 'log.txt'
    ctx = mp.get_context('spawn')
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        barrier = manager.Barrier(2)
        out = pool.map(_train_in_process, [(str(tmp_path / 'c'), str(log), barrier)] * 2, chunksize=1)
    assert log.read_text().count('trained') == 1
    assert out[0] == out[1]  # both processes got the single trained model
    files = sorted(p.name for p in (tmp_path / 'c' / 'race').iterdir())
    assert files == [
        f"{config_key({'scm': 'loan', 'seed': 0})}.lock",
        f"{config_key({'scm': 'loan', 'seed': 0})}.pt",
    ]


def test_cache_refresh_and_bad_train(tmp_path):
    n = []
    train = lambda: (n.append(1), ({'w': torch.zeros(1)}, None))[1]
    cached_checkpoint('k', {'a': 1}, train, cache=tmp_path)
    cached_checkpoint('k', {'a': 1}, train, cache=tmp_path)
    cached_checkpoint('k', {'a': 1}, train, cache=tmp_path, refresh=True)
    assert len(n) == 2
    with pytest.raises(TypeError, match='must return'):
        cached_checkpoint('k', {'a': 2}, lambda: {'w': torch.zeros(1)}, cache=tmp_path)


def test_as_features_errors():
    with pytest.raises(ValueError, match='2 columns but 3 features are expected'):
        as_features(torch.zeros(4, 2), 3)
    with pytest.raises(TypeError, match='must hold numbers'):
        as_features(torch.zeros(4, 3, dtype=torch.bool), 3)
    assert as_features(torch.zeros(2, 3, dtype=torch.int64), 3).dtype == torch.float32


_WRITER = '''import sys, time
from carma_nb.core import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b'half a checkpoint'); f.flush()
    print('writing', flush=True)
    time.sleep(120)
'''


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_run_under_the_lock(tmp_path):
    "kill -9 during a save leaves `.<name>.XXXXXXXX.tmp`; the next run taking the model's lock deletes it."
    config = {'scm': 'loan', 'seed': 0}
    target = tmp_path / 'k' / f'{config_key(config)}.pt'
    writer = subprocess.Popen([sys.executable, '-c', _WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == 'writing'
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    orphans = list(target.parent.glob(f'.{target.name}.*.tmp'))
    assert len(orphans) == 1 and not target.exists()
    fd, alive = tempfile.mkstemp(dir=target.parent, prefix='.other.pt.', suffix='.tmp')  # another file's
    os.close(fd)
    cached_checkpoint('k', config, lambda: ({'w': torch.zeros(1)}, None), cache=tmp_path)
    assert not orphans[0].exists() and Path(alive).exists() and target.exists()


def _stack_in_process(args):
    cache, log, barrier, seeds = args
    barrier.wait()  # both processes ask for their stacks at the same moment

    def train_missing(todo):
        with open(log, 'a') as f:
            f.write(''.join(f'{seeds[i]}\n' for i in todo))
        time.sleep(0.5)
        return [({'w': torch.full((1,), float(seeds[i]))}, None) for i in todo]

    cks = cached_checkpoints('stack', [{'seed': s} for s in seeds], train_missing, cache=cache)
    return [ck.state_dict['w'].item() for ck in cks]


def test_overlapping_stacks_train_each_model_once_across_processes(tmp_path):
    "Two processes ask for overlapping stacks in opposite orders: no deadlock, each model trained once."
    log, ctx = tmp_path / 'log.txt', mp.get_context('spawn')
    stacks = [[0, 1, 2], [3, 2, 1]]
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        barrier = manager.Barrier(2)
        args = [(str(tmp_path / 'c'), str(log), barrier, s) for s in stacks]
        out = pool.map_async(_stack_in_process, args, chunksize=1).get(timeout=120)  # a deadlock times out
    assert sorted(map(int, log.read_text().split())) == [0, 1, 2, 3]
    assert out == [[0.0, 1.0, 2.0], [3.0, 2.0, 1.0]]
    with pytest.raises(ValueError, match='configs must be distinct'):
        cached_checkpoints('stack', [{'seed': 0}, {'seed': 0}], lambda todo: [], cache=tmp_path / 'c')
