"""Nothing a user has is lost: kit commands that would have deleted or overwritten a user's files refuse, with one
line naming the folder and what to do, and leave every file as it was (issue: `train` unlinked an earlier run's
model.pt and logs; `pseudo --out U/SegmentationClass` replaced the ground-truth masks). On the real layouts written
by conftest.py's fixtures; tiny sizes."""
import hashlib
import shutil
from pathlib import Path

import pytest

from pis_nb.cli import main


pytestmark = pytest.mark.usefixtures('one_thread')   # conftest.py


def _digests(folder: Path) -> dict:
    "{relative path: SHA-256} of every file under `folder`."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture
def trained(tmp_path, data_voc, data_user):
    "A finished source-only run on the real layouts, and the options it was trained with."
    sets = dict(source_root=data_voc.root, personal_root=data_user.root.parent, backbone='small', pretrained=False,
                crop_size=32, base_size=32, eval_size=32, batch_size=2, num_workers=0, num_steps=2, device='cpu')
    opts = [a for k, v in sets.items() for a in ('--set', f'{k}={v}')]
    assert main(['train', str(tmp_path/'run'), '--method', 'source', '--quiet', *opts]) == 0
    return tmp_path/'run', data_user, opts


def test_train_keeps_an_earlier_runs_results(trained, capsys):
    "A finished run whose checkpoint is gone: `train` into it again refuses, and model.pt, logs and summary stay."
    run, _, opts = trained
    (run/'checkpoint.pt').unlink()
    before = _digests(run)
    assert {'model.pt', 'log.jsonl', 'summary.json'} <= set(before)
    capsys.readouterr()
    assert main(['train', str(run), '--method', 'source', '--quiet', *opts]) == 2
    err = capsys.readouterr().err.strip()
    assert 'holds the results of an earlier run (model.pt' in err and 'nothing was changed' in err and len(err.splitlines()) == 1, err
    assert _digests(run) == before


def test_pseudo_never_writes_into_the_users_folder(trained, capsys):
    "`pseudo --out` inside the user's folder (its SegmentationClass/ above all) or into a folder of other files refuses; the masks stay."
    run, user, opts = trained
    before = _digests(user.root)
    for out in (user.root/'SegmentationClass', user.root/'pseudo'):
        capsys.readouterr()
        assert main(['pseudo', str(run), '--user', str(user.root), '--out', str(out), '--quiet', *opts]) == 2
        err = capsys.readouterr().err.strip()
        assert "inside the user's data folder" in err and len(err.splitlines()) == 1, err
    assert _digests(user.root) == before
    mine = run.parent/'my-notes'; mine.mkdir(); (mine/'a.txt').write_text('mine')
    assert main(['pseudo', str(run), '--user', str(user.root), '--out', str(mine), '--quiet', *opts]) == 2
    assert 'not pis-nb pseudo labels' in capsys.readouterr().err
    assert _digests(mine) == {'a.txt': hashlib.sha256(b'mine').hexdigest()}
    assert main(['pseudo', str(run), '--user', str(user.root), '--out', str(run.parent/'pl'), '--quiet', *opts]) == 0
    assert (run.parent/'pl'/'pseudo.json').is_file() and _digests(user.root) == before


def test_a_second_train_on_a_busy_folder_stops(trained, capsys):
    "While another process holds a run folder, `train` there stops at once naming that PID; once it is killed, the run goes on."
    import subprocess, sys
    run, _, opts = trained
    (run/'checkpoint.pt').unlink(); (run/'model.pt').unlink(); (run/'summary.json').unlink()   # an attempt to start afresh
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time\nfrom pis_nb.core import run_lock\n'
                               'with run_lock(sys.argv[1]):\n    print("held", flush=True); time.sleep(120)', str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        before = _digests(run)
        capsys.readouterr()
        assert main(['train', str(run), '--method', 'source', '--quiet', *opts]) == 2
        err = capsys.readouterr().err.strip()
        assert f'in use by PID {holder.pid}' in err and len(err.splitlines()) == 1, err
        assert _digests(run) == before
    finally:
        holder.kill(); holder.wait()
    assert main(['train', str(run), '--method', 'source', '--quiet', *opts]) == 0   # the killed holder's lock is gone
    assert (run/'model.pt').is_file()


@pytest.mark.parametrize('flags,msg', [(['--steps', '0'], '--steps: must be >= 1, got 0'), (['--steps', '-5'], 'got -5'),
                                       (['--save-every', '0'], '--save-every: must be >= 1'),
                                       (['--set', 'lr=nan'], 'lr must be a finite number'),
                                       (['--set', 'betas_d=0.9'], 'betas_d must be two numbers'),
                                       (['--set', 'device=mps'], "device must be empty (automatic), cpu, cuda or cuda:N")])
def test_bad_training_flags_are_one_line(tmp_path, flags, msg, capsys):
    "Out-of-range flags and settings stop `train` before anything is written, with one line naming the flag or setting."
    assert main(['train', str(tmp_path/'run'), '--method', 'source', '--quiet', *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1, err
    assert not (tmp_path/'run').exists()


def test_checkpoints_as_often_as_asked(trained, monkeypatch):
    "`--save-every N` writes checkpoint.pt every N steps (and at the end), the default only at the end of a short run."
    import pis_nb.train as T
    run, _, opts = trained
    saved, real = [], T.Trainer.save_checkpoint
    monkeypatch.setattr(T.Trainer, 'save_checkpoint', lambda self: (saved.append(self.step), real(self))[1])
    assert main(['train', str(run.parent/'every1'), '--method', 'source', '--quiet', *opts, '--set', 'num_steps=3',
                 '--save-every', '1']) == 0
    assert saved == [1, 2, 3], saved
    saved.clear()
    assert main(['train', str(run.parent/'default'), '--method', 'source', '--quiet', *opts, '--set', 'num_steps=3']) == 0
    assert saved == [3], saved


@pytest.mark.parametrize('name,content,msg', [
    ('run.json', b'{"method": "sou', 'run.json: this run record is damaged (invalid JSON'),
    ('run.json', b'\x89\xff\x00binary', 'run.json: this run record is damaged (binary data'),
    ('run.json', b'{}', 'run.json: this run record is damaged (no method in it)'),
    ('config.json', b'{"lr": 0.1', 'config.json: not valid JSON'),
])
def test_damaged_run_files_are_one_line(trained, capsys, name, content, msg):
    "A damaged run record or configuration stops `train` (resume) and `eval` with one line naming the file; nothing changes."
    run, _, opts = trained
    (run/name).write_bytes(content)
    before = _digests(run)
    for argv in (['train', str(run), '--method', 'source', '--quiet', *opts], ['eval', str(run), '--quiet']):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, (argv, err)
    assert _digests(run) == before


def test_a_damaged_checkpoint_is_refused(trained, capsys):
    "64 garbled bytes in model.pt: `eval` refuses it, naming the file, instead of scoring garbage weights."
    run, _, opts = trained
    raw = bytearray((run/'model.pt').read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(range(64))
    (run/'model.pt').write_bytes(raw)
    assert main(['eval', str(run), '--quiet']) == 2
    err = capsys.readouterr().err.strip()
    assert 'model.pt: damaged' in err and len(err.splitlines()) == 1, err
    assert not (run/'eval').exists()
