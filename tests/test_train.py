"""Training loops (pis_nb.train): exact resume (in-process and across a simulated crash, with data workers),
same-seed determinism, SIGTERM to a training process, DDP with gloo on two CPU processes, bad arguments.
Everything runs at a tiny size (PIS-Synth, 16 photos of 64 px, the small backbone). No test times anything."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pis_nb.cluster import write_cluster_list
from pis_nb.core import ConfigError, PisError, RunConfig
from pis_nb.data import UserDataset
from pis_nb.synth import make_pis_synth
import pis_nb.train as T

ROOT = Path(__file__).resolve().parents[1]
LIST = 'train_cluster4.txt'


pytestmark = pytest.mark.usefixtures('one_thread')   # conftest.py


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    "A tiny PIS-Synth (one user of 16 photos, 16 source images, 64 px) with the user's photos in 4 groups."
    root = make_pis_synth(tmp_path_factory.mktemp('tr')/'pis-synth', n_users=1, images_per_user=16, n_source=16,
                          size=64, seed=0, progress=False)
    user = root/'personal'/'id1'
    ds = UserDataset(user)
    write_cluster_list(user, ds.image_paths, np.arange(len(ds)) % 4, LIST)
    return root


def _cfg(synth, **kw):
    base = dict(source_root=str(synth/'VOCdevkit'/'VOC2012'), personal_root=str(synth/'personal'), users=['id1'],
                backbone='small', pretrained=False, crop_size=32, base_size=48, eval_size=48, batch_size=2,
                num_workers=0, num_groups=4, num_steps=4, device='cpu', seed=0)
    return RunConfig(**{**base, **kw})


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _losses(run_dir, cols=('loss', 'seg')):
    log = T.read_log(run_dir)
    return log.index.tolist(), log[[c for c in cols if c in log]].values


def test_resume_after_crash_with_workers_is_exact(synth, tmp_path):
    "N steps, a crash after one more unsaved step, resume: identical to 2N straight steps (data workers on)."
    cfg = _cfg(synth, num_workers=1)
    straight = T.train(cfg, tmp_path/'a', 'advent', target_list=LIST, progress=False)
    t = T.Trainer(cfg, tmp_path/'b', 'advent', target_list=LIST, progress=False)
    assert t.fit(2) == 'paused'
    saved = (tmp_path/'b'/'checkpoint.pt').read_bytes()
    assert t.fit(1) == 'paused'                                  # step 3 logged ...
    (tmp_path/'b'/'checkpoint.pt').write_bytes(saved)            # ... but "crashed" before its checkpoint
    assert len(T.read_jsonl(tmp_path/'b'/'log.jsonl')) == 3
    del t
    r = T.Trainer.resume(tmp_path/'b', progress=False)
    assert r.step == 2 and [x['step'] for x in T.read_jsonl(tmp_path/'b'/'log.jsonl')] == [1, 2]
    assert r.fit() == 'finished'
    assert _same(straight.net, r.net) and _same(straight.discs, r.discs)
    s1, l1 = _losses(straight.run_dir, ('loss', 'seg', 'adv_main', 'd_main'))
    s2, l2 = _losses(r.run_dir, ('loss', 'seg', 'adv_main', 'd_main'))
    assert s1 == s2 == [1, 2, 3, 4] and np.array_equal(l1, l2)
    ck = T.load_checkpoint(tmp_path/'b'/'checkpoint.pt')     # weights_only=True
    assert ck['step'] == 4 and set(ck['rng']) == {'python', 'numpy', 'torch', 'cuda'}
    assert set(ck['streams']) == {'source', 'target'}


def test_same_seed_same_numbers_other_seed_differs(synth, tmp_path):
    cfg = _cfg(synth, num_steps=3)
    a = T.train(cfg, tmp_path/'a', 'maxsquare', target_list=LIST, progress=False)
    b = T.train(cfg, tmp_path/'b', 'maxsquare', target_list=LIST, progress=False)
    c = T.train(cfg.override(seed=1), tmp_path/'c', 'maxsquare', target_list=LIST, progress=False)
    assert _same(a.net, b.net) and not _same(a.net, c.net)
    assert np.array_equal(_losses(a.run_dir)[1], _losses(b.run_dir)[1])


def test_every_method_and_stage2_end_to_end(synth, tmp_path):
    cfg = _cfg(synth, num_steps=2)
    for name in T.METHODS:
        kw = {'method_kw': {'beta': 0.1}} if name == 'fda' else {}
        if not T.METHODS[name].uses_source: kw['init'] = tmp_path/'source'     # TENT adapts a trained model
        t = T.train(cfg, tmp_path/name, name, target_list=LIST, progress=False, **kw)
        assert t.status == 'finished' and np.isfinite(T.read_log(t.run_dir).loss).all(), name
    s2 = T.train(cfg.override(pseudo_ratio=0.6), tmp_path/'s2', 'advent', stage=2, init=tmp_path/'advent',
                 target_list=LIST, progress=False)
    assert s2.status == 'finished' and 'pse' in T.read_log(s2.run_dir)
    assert len((s2.run_dir/'pseudo'/'train_pseudo.txt').read_text().splitlines()) == int(0.6 * 16)   # as released: floor


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(synth, tmp_path):
    "A training process sent SIGTERM finishes its step, checkpoints, reports 'interrupted'; the run then resumes."
    run = tmp_path/'run'
    cfg_file = _cfg(synth, num_steps=100000).save(tmp_path/'cfg.json')
    script = textwrap.dedent(f"""
        import sys
        from pis_nb.core import RunConfig
        from pis_nb.train import train
        cfg = RunConfig.load({str(cfg_file)!r})
        t = train(cfg, {str(run)!r}, 'ours', target_list={LIST!r}, progress=False)
        print('status', t.status, t.step, flush=True)
        sys.exit(0 if t.status == 'interrupted' else 3)
    """)
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(T.read_jsonl(run/'log.jsonl')) < 3 and p.poll() is None:
            time.sleep(0.1)
        assert p.poll() is None, p.communicate()
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 0, (out, err)
    summary = json.loads((run/'summary.json').read_text())
    assert summary['status'] == 'interrupted' and summary['stop_signal'] == 'SIGTERM'
    step = T.load_checkpoint(run/'checkpoint.pt')['step']
    assert 3 <= step < 100000 and f"status interrupted {step}" in out
    assert [r['step'] for r in T.read_jsonl(run/'log.jsonl')] == list(range(1, step + 1))
    t = T.Trainer.resume(run, progress=False)
    assert t.fit(2) == 'paused' and t.step == step + 2


DDP_SCRIPT = """
import json, os, sys, torch
from pis_nb.core import RunConfig
from pis_nb.train import Trainer
cfg = RunConfig(**json.loads(os.environ['PIS_TEST_CFG']))
t = Trainer(cfg, os.environ['PIS_TEST_RUN'], 'ours', target_list='train_cluster4.txt', progress=False)
assert t.dist.world_size == 2
streams = t._streams()
groups = [set(next(streams['target'])['group'].tolist()) for _ in range(3)]
for s in streams.values(): s.close()
assert all(len(g) == 1 for g in groups), groups
status = t.fit()
torch.save(t.net.state_dict(), os.path.join(os.environ['PIS_TEST_OUT'], f"rank{t.dist.rank}.pt"))
print('rank', t.dist.rank, status, flush=True)
"""


def test_ddp_gloo_two_processes(synth, tmp_path):
    "torchrun with 2 CPU processes (gloo): both ranks end with identical weights; rank 0 alone writes the run folder."
    (tmp_path/'ddp.py').write_text(DDP_SCRIPT)
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'PIS_TEST_RUN': str(tmp_path/'run'),
           'PIS_TEST_OUT': str(tmp_path), 'PIS_TEST_CFG': json.dumps(_cfg(synth, num_steps=2).to_dict())}
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
           f'--master_port={port}', str(tmp_path/'ddp.py')]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try: out, err = p.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); p.communicate()
        pytest.fail('DDP run timed out')
    assert p.returncode == 0, out[-2000:] + err[-4000:]
    a, b = (torch.load(tmp_path/f'rank{i}.pt', weights_only=True) for i in (0, 1))
    params = [k for k in a if 'running_' not in k and 'num_batches' not in k]   # BN statistics stay per rank
    assert params and all(torch.equal(a[k], b[k]) for k in params)
    assert json.loads((tmp_path/'run'/'summary.json').read_text())['world_size'] == 2
    assert [x['step'] for x in T.read_jsonl(tmp_path/'run'/'log.jsonl')] == [1, 2]


def test_bad_arguments_are_clear(synth, tmp_path):
    cfg = _cfg(synth)
    with pytest.raises(ConfigError, match='unknown method'): T.Trainer(cfg, tmp_path/'x', 'mrnet')
    with pytest.raises(ConfigError, match='init='): T.Trainer(cfg, tmp_path/'x', 'ours', stage=2, target_list=LIST)
    with pytest.raises(ConfigError, match="method 'source' reads none"):
        T.Trainer(cfg.override(model_selection='oracle'), tmp_path/'x', 'source')
    with pytest.raises(ConfigError, match='unknown parameter'):
        T.Trainer(cfg, tmp_path/'x', 'advent', method_kw={'beta': 0.1}, target_list=LIST)
    with pytest.raises(PisError, match='no such user folder'):
        T.Trainer(cfg, tmp_path/'x', 'ours', target_user='id9')
    with pytest.raises(PisError, match='not a run folder'): T.Trainer.resume(tmp_path/'nothing')
    with pytest.raises(PisError, match='neither model.pt'):
        (tmp_path/'empty').mkdir(); T.Trainer(cfg, tmp_path/'y', 'ours', stage=2, init=tmp_path/'empty', target_list=LIST)
    with pytest.raises(PisError, match=r'no train_cluster80.txt for K = 80.*pis-nb cluster'):
        T.Trainer(cfg.override(num_groups=80), tmp_path/'z', 'ours')  # no silent K = 1


def test_memory_run_resumes_exactly_and_settings_must_match(synth, tmp_path):
    "The whole-group memory is part of the checkpoint: a resumed memory run equals the straight one, memory included."
    cfg = _cfg(synth, num_steps=3)
    a = T.train(cfg, tmp_path/'a', 'ours', target_list=LIST, memory=True, progress=False)
    t = T.Trainer(cfg, tmp_path/'b', 'ours', target_list=LIST, memory=True, progress=False)
    t.fit(1); del t
    b = T.Trainer.resume(tmp_path/'b', progress=False)
    assert b.use_memory and len(b.memory) == 16
    b.fit()
    assert _same(a.net, b.net) and a.memory.photo_ids == b.memory.photo_ids
    assert torch.equal(a.memory.regions, b.memory.regions)
    with pytest.raises(ConfigError, match=r'other settings \(memory\)'):
        T.train(cfg, tmp_path/'b', 'ours', target_list=LIST, memory=False)
    with pytest.raises(ConfigError, match='method/stage'):
        T.train(cfg, tmp_path/'b', 'advent', target_list=LIST)
