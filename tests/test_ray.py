"""Chapter 14 on Ray: a quick run as Ray tasks gives the process pool's rows; tuning workers share a study."""

import dataclasses
import os

import pytest

ray = pytest.importorskip('ray')

from carma_nb.core import get_profile  # noqa: E402
from carma_nb.experiments import Workers, run_experiments  # noqa: E402

TIMING = ('job seconds', 'train s per model', 'ms per person (batch size 1)', 'ms per person (batched)')


def test_local_ray_instance_gives_the_process_pools_results(tmp_path, monkeypatch):
    "Two CPUs of a local Ray instance, then two worker processes, each with its own empty model cache."
    runs, one_seed = {}, dataclasses.replace(get_profile('quick'), seeds=1)
    for executor in ('ray', 'process'):
        monkeypatch.setenv('CARMA_CACHE', str(tmp_path / f'cache-{executor}'))
        runs[executor] = run_experiments(one_seed, ['chain-lin'], methods=('oracle', 'carma'), studies=(),
                                         workers=Workers(2, executor), out=tmp_path / executor, verbose=False)
        assert os.listdir(tmp_path / f'cache-{executor}')                 # the workers trained into it
    a, b = (runs[k].drop(columns=[c for c in TIMING if c in runs[k]]) for k in ('ray', 'process'))
    assert len(a) == 2 and a.equals(b)
    assert not ray.is_initialized()                                       # the local instance was shut down


def test_tuning_workers_as_ray_tasks_share_one_study(tmp_path, monkeypatch):
    "Two tuning workers on a local Ray instance, one trial each, in one sqlite study."
    from carma_nb.experiments import tune_on_ray

    monkeypatch.setenv('CARMA_CACHE', str(tmp_path / 'cache'))
    url = f'sqlite:///{tmp_path}/study.db'
    best = tune_on_ray('chain-lin', workers=2, trials=1, storage=url, profile='quick')
    assert best['trials in study'] == 2 and 0 <= best['validity %'] <= 100
    with pytest.raises(ValueError, match='needs --storage, a database every machine reaches'):
        tune_on_ray('chain-lin', address='ray://head:10001')
