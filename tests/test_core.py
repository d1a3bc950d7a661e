"""Profiles, figure locations, atomic checkpoints and the multi-process-safe model cache."""

import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from carma_nb import core
from carma_nb.core import (
    PROFILES,
    _temp_files,
    as_features,
    atomic_write,
    cache_dir,
    cached_checkpoint,
    cached_checkpoints,
    check_positive,
    check_seed,
    check_seeds,
    check_whole,
    check_widths,
    config_key,
    figure_dir,
    get_profile,
    load_checkpoint,
    load_weights,
    one_thread,
    project_root,
    remove_orphaned_temps,
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
    assert get_profile(PROFILES['quick']).name == 'quick'
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


def test_one_thread_as_a_decorator_restores_the_count_after_an_error():
    n0 = torch.get_num_threads()

    @one_thread()
    def threads_inside(fail=False):
        if fail:
            raise RuntimeError('boom')
        return torch.get_num_threads()

    assert threads_inside() == 1
    with pytest.raises(RuntimeError, match='boom'):
        threads_inside(True)
    assert torch.get_num_threads() == n0


def test_figure_dir_and_cache_dir_follow_profile_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv('CARMA_FIGURE_DIR', raising=False)
    monkeypatch.delenv('CARMA_CACHE', raising=False)
    assert figure_dir('paper').name == 'figures'
    assert figure_dir('quick').relative_to(project_root()) == Path('figures/_quick')
    assert cache_dir() == project_root() / '.carma_cache'
    monkeypatch.setenv('CARMA_FIGURE_DIR', str(tmp_path / 'elsewhere'))  # `carma-nb reproduce --out DIR`
    assert figure_dir('paper') == figure_dir('quick') == tmp_path / 'elsewhere'
    monkeypatch.setenv('CARMA_CACHE', str(tmp_path / 'cache'))
    assert cache_dir() == tmp_path / 'cache'


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


def test_checkpoint_keeps_the_config_and_refuses_what_it_cannot_store_or_read(tmp_path):
    lin = torch.nn.Linear(3, 1)
    p = save_checkpoint(tmp_path / 'm.pt', lin.state_dict(), {'scm': 'loan', 'hidden': [32, 32]})
    ck = load_checkpoint(p)
    assert ck.config['hidden'] == [32, 32] and ck.extras is None and ck.scaler is None
    with pytest.raises(TypeError, match='JSON-able'):
        save_checkpoint(tmp_path / 'bad.pt', lin.state_dict(), {'f': print})
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='not a readable carma_nb checkpoint'):
        load_checkpoint(tmp_path / 'junk.pt')


_GOOD = torch.nn.Linear(3, 2).state_dict()


@pytest.mark.parametrize(
    'state, msg',
    [
        ({'weight': _GOOD['weight']}, r"m.pt: missing tensors \['bias'\]"),
        ({**_GOOD, 'extra': torch.ones(1)}, r"unexpected tensors \['extra'\]"),
        ({**_GOOD, 'bias': torch.ones(3)}, r"'bias' is torch.float32 \(3,\)"),
        ({**_GOOD, 'bias': torch.tensor([0.0, float('nan')])}, 'NaN or inf'),
        ({**_GOOD, 'bias': _GOOD['bias'].double()}, 'float64'),
    ],
)
def test_load_weights_refuses_every_kind_of_damage(state, msg):
    lin = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=msg):
        load_weights(lin, state, 'm.pt')
    assert torch.equal(load_weights(lin, _GOOD, 'm.pt').weight.detach(), _GOOD['weight'])


def test_orphaned_temps_are_exactly_the_files_own_temporary_files(tmp_path):
    def mkstemp(prefix):
        fd, name = tempfile.mkstemp(dir=tmp_path, prefix=prefix, suffix='.tmp')
        os.close(fd)
        return Path(name)

    target = tmp_path / 'm.pt'
    with atomic_write(target) as f:
        assert len(_temp_files(target)) == 1  # the pattern matches atomic_write's temporary file
        f.write(b'x')
    orphan = mkstemp('.m.pt.')  # what a writer killed mid-write leaves
    other = mkstemp('.m.pt.x.')  # a writer of another file, m.pt.x, perhaps alive
    assert remove_orphaned_temps(target) == 1
    assert (orphan.exists(), other.exists(), target.exists()) == (False, True, True)


def test_two_threads_asking_for_one_model_train_it_once(tmp_path):
    calls, results = [], []

    def train():
        calls.append(1)
        time.sleep(0.2)
        return torch.nn.Linear(2, 1).state_dict(), None

    fetch = lambda: results.append(cached_checkpoint('demo', {'seed': 0}, train, cache=tmp_path))
    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert torch.equal(results[0].state_dict['weight'], results[1].state_dict['weight'])
    cached_checkpoint('demo', {'seed': 1}, train, cache=tmp_path)  # another config is another model
    assert len(calls) == 2


def test_stacks_in_threads_train_each_model_once_and_remove_their_orphans(tmp_path):
    trained = []

    def train_missing(cfgs):
        def train(todo):
            trained.extend(cfgs[i]['seed'] for i in todo)
            time.sleep(0.2)
            return [(torch.nn.Linear(2, 1).state_dict(), None) for _ in todo]

        return train

    stacks = [[{'seed': 0}, {'seed': 1}], [{'seed': 2}, {'seed': 1}, {'seed': 0}]]
    threads = [
        threading.Thread(target=cached_checkpoints, args=('demo', s, train_missing(s), tmp_path))
        for s in stacks
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(trained) == [0, 1, 2]  # each model trained once, nobody deadlocked
    fd, orphan = tempfile.mkstemp(
        dir=tmp_path / 'demo', prefix=f".{config_key({'seed': 3})}.pt.", suffix='.tmp'
    )
    os.close(fd)
    cached_checkpoints('demo', [{'seed': 3}], train_missing([{'seed': 3}]), cache=tmp_path)
    assert not Path(orphan).exists()
    twice = [{'seed': 4}, {'seed': 4}]
    with pytest.raises(ValueError, match='distinct'):
        cached_checkpoints('demo', twice, train_missing(twice), cache=tmp_path)


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
    assert as_features(np.zeros((3, 2)), 2, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match='must be 2-D'):
        as_features(torch.zeros(2, 2, 2), 2)
    with pytest.raises(TypeError, match='must be numeric'):
        as_features([['a', 'b']], 2)


def test_hyperparameter_checks_accept_whole_and_positive_values():
    assert check_whole(3.0, 'epochs') == 3 and type(check_whole(np.int64(3), 'epochs')) is int
    assert check_positive(1e-3, 'lr') == 1e-3 and check_positive(0, 'margin', zero=True) == 0.0
    assert check_seed(0) == 0 and check_seeds(range(3)) == [0, 1, 2]
    assert check_widths([32, 32.0], 'hidden') == (32, 32) and check_widths((), 'hidden', empty=True) == ()


@pytest.mark.parametrize('bad', [2.5, '5', True, 0, float('inf'), None])
def test_check_whole_refuses(bad):
    with pytest.raises(ValueError, match='epochs must be a whole number ≥ 1'):
        check_whole(bad, 'epochs')


@pytest.mark.parametrize('bad', [0, -1, float('inf'), float('nan'), '1e-3', True])
def test_check_positive_refuses(bad):
    with pytest.raises(ValueError, match='lr must be a finite number > 0'):
        check_positive(bad, 'lr')


@pytest.mark.parametrize(
    'call, msg',
    [
        (lambda: check_seed(-1), 'seed must be a whole number ≥ 0'),
        (lambda: check_seeds([1, 1]), 'seeds must be distinct'),
        (lambda: check_seeds([0, -1]), 'every seed in seeds must be a whole number ≥ 0'),
        (lambda: check_widths([0], 'mask_hidden'), 'every width in mask_hidden must be a whole number ≥ 1'),
        (lambda: check_widths(32, 'hidden'), 'a list of layer widths'),
        (lambda: check_widths([], 'mask_hidden'), 'at least one layer width'),
    ],
)
def test_seed_and_width_checks_refuse(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


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
