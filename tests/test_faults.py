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
                                       (['--set', 'device=mps'], "device must be empty (automatic), cpu, cuda or cuda:N"),
                                       (['--method', 'fda', '--param', 'beta=nan'], "method 'fda': beta must be a finite number in [0, 0.5]")])
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


def _garble(path: Path) -> None:
    "64 garbled bytes in the middle of `path` (a bad disk or copy)."
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(range(64))
    path.write_bytes(raw)


def test_a_damaged_latest_checkpoint_resumes_from_the_previous(trained, capsys):
    "The previous checkpoint is kept: with checkpoint.pt damaged, `train` says so, resumes from checkpoint.prev.pt and ends with the very model an unbroken run makes."
    import torch
    run, _, opts = trained
    more = [*opts, '--set', 'num_steps=4', '--save-every', '1']
    assert main(['train', str(run.parent/'unbroken'), '--method', 'source', '--quiet', *more]) == 0
    assert not (run.parent/'unbroken'/'checkpoint.prev.pt').exists()     # a finished run keeps one checkpoint
    broken = run.parent/'broken'
    assert main(['train', str(broken), '--method', 'source', '--quiet', *more, '--steps', '3']) == 0   # paused at step 3
    assert torch.load(broken/'checkpoint.prev.pt', weights_only=True)['step'] == 2
    _garble(broken/'checkpoint.pt')
    capsys.readouterr()
    assert main(['train', str(broken), '--method', 'source', '--quiet', *more]) == 0
    err = capsys.readouterr().err
    assert 'checkpoint.pt: damaged' in err and 'resuming from checkpoint.prev.pt (step 2)' in err, err
    assert (broken/'checkpoint.pt.damaged').is_file() and not (broken/'checkpoint.prev.pt').exists()
    a = torch.load(run.parent/'unbroken'/'model.pt', weights_only=True)['model']
    b = torch.load(broken/'model.pt', weights_only=True)['model']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r['step'] for r in __import__('pis_nb.train', fromlist=['x']).read_jsonl(broken/'log.jsonl')] == [1, 2, 3, 4]


class _Payload:
    "A pickled object: what torch.load(weights_only=True) refuses."


@pytest.mark.parametrize('kind,msg', [('empty', 'not a pis-nb checkpoint (it holds dict [] without network weights)'),
                                      ('other-method', "not this run's checkpoint (it holds advent/1"),
                                      ('weights-only', "not this run's checkpoint (it holds source/1 weights without a training state"),
                                      ('pickle', 'not a checkpoint the kit opens: it holds Python objects')])
def test_a_checkpoint_from_elsewhere_is_one_line(trained, capsys, kind, msg):
    "A checkpoint.pt that is not this run's (empty, of another method, a weights file, a pickle) stops `train` with one line; nothing changes."
    import torch
    run, _, opts = trained
    ck = torch.load(run/'checkpoint.pt', weights_only=True)
    obj = dict(empty={}, pickle={'model': _Payload()}, **{'other-method': {**ck, 'method': 'advent'},
               'weights-only': torch.load(run/'model.pt', weights_only=True)})[kind]
    torch.save(obj, run/'checkpoint.pt')
    before = _digests(run)
    capsys.readouterr()
    assert main(['train', str(run), '--method', 'source', '--quiet', *opts]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and 'checkpoint.pt' in err and len(err.splitlines()) == 1, err
    assert 'weights_only=False' not in err
    assert _digests(run) == before


def test_a_damaged_log_is_named_on_resume(trained, capsys):
    "A garbled line inside log.jsonl is a warning naming it when the run resumes; a binary log.jsonl is a one-line error."
    run, _, opts = trained
    paused = run.parent/'paused'
    more = [*opts, '--set', 'num_steps=3']
    assert main(['train', str(paused), '--method', 'source', '--quiet', *more, '--steps', '2']) == 0
    lines = (paused/'log.jsonl').read_text().splitlines()
    (paused/'log.jsonl').write_text(lines[0][:-5] + '#garbled\n' + lines[1] + '\n')
    capsys.readouterr()
    assert main(['train', str(paused), '--method', 'source', '--quiet', *more]) == 0
    err = capsys.readouterr().err
    assert 'log.jsonl: 1 damaged line(s) skipped (line 1)' in err, err
    second = run.parent/'second'
    assert main(['train', str(second), '--method', 'source', '--quiet', *more, '--steps', '1']) == 0
    (second/'log.jsonl').write_bytes(b'\x00\x01\xffPK binary')
    before = _digests(second)
    capsys.readouterr()
    assert main(['train', str(second), '--method', 'source', '--quiet', *more]) == 2
    err = capsys.readouterr().err.strip()
    assert 'log.jsonl: damaged (binary data, not JSON lines)' in err and len(err.splitlines()) == 1, err
    assert _digests(second) == before


def test_damaged_tables_are_one_line_and_a_cut_table_is_said(trained, capsys):
    "A binary results.csv or classes.csv stops `report` with one line naming it; one cut short mid-row is reported with a warning."
    run, user, opts = trained
    assert main(['eval', str(run), '--user', str(user.root), '--quiet']) == 0
    res = run/'eval'/'results.csv'
    good = res.read_bytes()
    res.write_bytes(good[:good.rstrip(b'\n').rfind(b'\n') + 12])   # cut short while it was copied: 12 bytes into the last row
    capsys.readouterr()
    assert main(['report', str(run), '--out', str(run.parent/'rep')]) == 0
    assert 'results.csv: this results table ends mid-row' in capsys.readouterr().err
    res.write_bytes(good)
    for path, data in ((res, b'\x89PNG\x00\x00binary'), (run/'eval'/user.root.name/'classes.csv', b'\x00\x00')):
        keep = path.read_bytes()
        path.write_bytes(data)
        assert main(['report', str(run), '--out', str(run.parent/'rep2')]) == 2
        err = capsys.readouterr().err.strip()
        assert f'{path.name}: this' in err and 'damaged (binary data, not CSV text)' in err and len(err.splitlines()) == 1, err
        path.write_bytes(keep)
    res.write_bytes(good)


def test_a_full_disk_is_one_line_and_keeps_the_checkpoint(trained, capsys, monkeypatch):
    "torch.save failing for want of space ('unexpected pos') is one line naming the file and the disk; the earlier checkpoint stays."
    import torch
    run, _, opts = trained
    paused = run.parent/'paused'
    more = [*opts, '--set', 'num_steps=3']
    assert main(['train', str(paused), '--method', 'source', '--quiet', *more, '--steps', '1']) == 0
    before = (paused/'checkpoint.pt').read_bytes()
    def full(obj, f, *a, **k):
        f.write(b'PK\x03\x04 half'); raise RuntimeError('[enforce fail at inline_container.cc:778] . unexpected pos 576 vs 474')
    monkeypatch.setattr(torch, 'save', full)
    capsys.readouterr()
    assert main(['train', str(paused), '--method', 'source', '--quiet', *more]) == 2
    err = capsys.readouterr().err.strip()
    assert 'checkpoint.pt: not written: the disk is full' in err and 'the earlier checkpoint.pt is unchanged' in err, err
    assert len(err.splitlines()) == 1, err
    assert (paused/'checkpoint.pt').read_bytes() == before
    assert not list(paused.glob('.*.tmp'))


def test_links_out_of_the_photo_folder_are_refused_everywhere(trained, tmp_path, capsys):
    "A photo that is a link to a file outside the user's folder: `check`, `train`, `eval` and `cluster` all refuse it, naming the link."
    run, user, opts = trained
    outside = tmp_path/'elsewhere.jpg'
    name = user.names[2]
    link = user.root/'JPEGImages'/f'{name}.jpg'
    shutil.move(link, outside)
    link.symlink_to(outside)
    for argv in (['check', str(user.root)],
                 ['train', str(tmp_path/'r2'), '--method', 'ours', '--user', str(user.root), '--quiet', *opts,
                  '--init', str(run)],
                 ['eval', str(run), '--user', str(user.root), '--quiet'],
                 ['cluster', str(user.root), '--k', '2', '--embedder', 'colour-texture', '--quiet', '--overwrite']):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert f'{name}.jpg: a link to' in err and 'outside the data folder' in err, (argv, err)
        assert len(err.splitlines()) == 1, (argv, err)


def test_cluster_writes_lists_elsewhere(trained, tmp_path, capsys):
    "`cluster --list-dir` leaves the photo folder as it was: the list and the feature cache go to the folder given, and the list reads back."
    from pis_nb.data import UserDataset
    _, user, _ = trained
    before = _digests(user.root)
    out = tmp_path/'lists'
    assert main(['cluster', str(user.root), '--k', '2', '--embedder', 'colour-texture', '--quiet', '--list-dir', str(out)]) == 0
    assert _digests(user.root) == before and not (user.root/'.pis_cache').exists()
    assert (out/'train_cluster2.txt').is_file() and list((out/'.pis_cache').glob('features-*.npz'))
    ds = UserDataset(user.root, str(out/'train_cluster2.txt'))
    assert sorted(ds.names) == sorted(user.names) and set(ds.groups.tolist()) == {0, 1}
    assert main(['cluster', str(user.root.parent), '--k', '2', '--embedder', 'colour-texture', '--quiet',
                 '--list-dir', str(tmp_path/'many')]) == 0
    assert (tmp_path/'many'/user.root.name/'train_cluster2.txt').is_file() and _digests(user.root) == before


def test_a_nan_feature_cache_is_rebuilt(trained, capsys):
    "Cached feature vectors holding NaN are dropped with a warning naming the cache and recomputed; clustering goes on."
    import numpy as np
    _, user, _ = trained
    argv = ['cluster', str(user.root), '--k', '2', '--embedder', 'colour-texture', '--quiet', '--overwrite']
    assert main(argv) == 0
    cache = next((user.root/'.pis_cache').glob('features-*.npz'))
    with np.load(cache) as z: d = {k: z[k] for k in z.files}
    d['features'][:] = np.nan
    np.savez(cache, **d)
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f'{cache.name}: {len(user.names)} cached feature vector(s) hold NaN' in err, err
    with np.load(cache) as z: assert np.isfinite(z['features']).all()


def test_big_photos_are_scored_band_by_band(trained, monkeypatch):
    "Restoring a prediction band by band (photos above BAND_PIXELS) scores as restoring it whole, and never holds (C, H, W) of the photo."
    import pis_nb.train as T
    from pis_nb.evaluate import evaluate_user
    run, user, _ = trained
    model, mem = T.load_model(run)
    whole = evaluate_user(model, user.root, eval_size=16)
    H, W = user.size
    monkeypatch.setattr(T, 'BAND_PIXELS', 2 * W)         # every test photo is "big": two rows a band
    shapes, real = [], T.prob_maps
    monkeypatch.setattr(T, 'prob_maps', lambda prob: (shapes.append(tuple(prob.shape)), real(prob))[1])
    monkeypatch.setattr(T, 'restore_size', lambda *a, **k: pytest.fail('a whole (C, H, W) restored'))
    banded = evaluate_user(model, user.root, eval_size=16)
    for k, v in whole.metrics.items(): assert abs(v - banded.metrics[k]) < 1e-6, (k, v, banded.metrics[k])
    assert shapes and all(s[1] <= 2 and s[2] == W for s in shapes), shapes   # softmax only ever over a band of rows


def test_the_big_photo_benchmark_runs(tmp_path):
    "benchmarks/bigphoto.py at a smoke size: both ways measured, the same arg-max map, figures printed."
    import subprocess, sys
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root/'benchmarks'/'bigphoto.py'), '--sizes', '1200x1000', '--bands-only'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [l.split() for l in out.stdout.splitlines() if l.strip().startswith('1200x1000')]
    assert [r[2] for r in rows] == ['whole', 'bands'] and all(float(r[3]) > 0 for r in rows), out.stdout
    assert rows[1][5:] == ['100.0000', '%', 'of', 'pixels'], out.stdout


def test_a_read_only_photo_folder_points_to_list_dir(trained, capsys, monkeypatch):
    "`cluster` on a folder it may not write (simulated: root writes anywhere) is one line saying so and naming --list-dir."
    import errno, tempfile
    _, user, _ = trained
    for name in ('mkstemp', 'TemporaryFile'):
        def refuse(*a, dir=None, _real=getattr(tempfile, name), **k):
            if dir is not None and Path(dir).resolve().is_relative_to(user.root.resolve()):
                raise PermissionError(errno.EACCES, 'Permission denied')
            return _real(*a, dir=dir, **k)
        monkeypatch.setattr(tempfile, name, refuse)
    before = _digests(user.root)
    capsys.readouterr()
    assert main(['cluster', str(user.root), '--k', '2', '--embedder', 'colour-texture', '--quiet', '--overwrite']) == 2
    err = capsys.readouterr().err.strip()
    assert f'{user.root}: cannot write the group list here (Permission denied' in err and '--list-dir DIR' in err, err
    assert len(err.splitlines()) == 1 and _digests(user.root) == before      # refused before embedding: no cache either


def test_the_source_set_follows_links(data_voc, tmp_path, capsys):
    "VOC is arranged by hand: a SegmentationClassAug linked in from where it was unpacked is read, and `cluster --source` lists it."
    import numpy as np
    from pis_nb.data import VOCSource, read_mask
    aug = data_voc.root/'SegmentationClassAug'
    shutil.move(aug, tmp_path/'unpacked-aug')
    aug.symlink_to(tmp_path/'unpacked-aug', target_is_directory=True)
    ds = VOCSource(data_voc.root, 'train_aug.txt')
    assert ds.names == data_voc.names[:4]
    assert all(np.array_equal(read_mask(m), data_voc.labels[n]) for n, m in zip(ds.names, ds.mask_paths))
    assert main(['cluster', str(data_voc.root), '--list', 'train_aug.txt', '--k', '2', '--embedder', 'colour-texture',
                 '--quiet']) == 0, capsys.readouterr().err
    lines = (data_voc.root/'train_aug_cluster2.txt').read_text().splitlines()
    assert len(lines) == 4 and all(l.split()[1].startswith('/SegmentationClassAug/') for l in lines), lines


def test_a_best_pt_newer_than_the_checkpoint_is_not_trusted(trained, capsys):
    "Oracle selection: a best.pt written after the checkpoint a run resumes from (killed between the two saves) names weights the checkpoint does not know; the choice is made again from the evaluations redone after it."
    import json
    import torch
    run, user, opts = trained
    adapt = run.parent/'adapt'
    more = [*opts, '--user', str(user.root), '--init', str(run), '--set', 'model_selection=oracle', '--set', 'eval_every=1',
            '--set', 'num_steps=3', '--save-every', '1']
    assert main(['train', str(adapt), '--method', 'advent', '--quiet', *more, '--steps', '2']) == 0
    ck = torch.load(adapt/'checkpoint.pt', weights_only=True)
    assert ck['best'] is not None and (adapt/'best.pt').is_file()
    best = torch.load(adapt/'best.pt', weights_only=True)
    torch.save({**best, 'step': 99}, adapt/'best.pt')          # as if saved by an evaluation after the checkpoint
    # ...whose own record of the best is unbeatable: trusted, it would keep naming its step for best.pt's weights
    torch.save({**ck, 'best': {**ck['best'], 'score': 1e9}}, adapt/'checkpoint.pt')
    assert main(['train', str(adapt), '--method', 'advent', '--quiet', *more]) == 0, capsys.readouterr().err
    summary = json.loads((adapt/'summary.json').read_text())
    assert summary['selected_step'] == 3 and summary['best']['step'] == 3, summary
    assert torch.load(adapt/'model.pt', weights_only=True)['step'] == 3


def test_a_folder_reached_through_a_link_works_and_keeps_the_link_rule(trained, tmp_path, capsys):
    "A user folder named through a symlink (~/data -> /scratch): lists are written and read, and a photo linked out of it is still refused."
    from pis_nb.data import UserDataset
    _, user, _ = trained
    alias = tmp_path/'alias'
    alias.symlink_to(user.root.parent, target_is_directory=True)
    via = alias/user.root.name
    assert main(['cluster', str(via), '--k', '2', '--embedder', 'colour-texture', '--quiet', '--overwrite']) == 0, capsys.readouterr().err
    lines = (user.root/'train_cluster2.txt').read_text().splitlines()
    assert len(lines) == len(user.names) and all(l.startswith('/JPEGImages/') for l in lines), lines[:3]
    assert len(UserDataset(via, 'train_cluster2.txt')) == len(user.names)
    name = user.names[0]
    photo = user.root/'JPEGImages'/f'{name}.jpg'
    shutil.move(photo, tmp_path/'out.jpg'); photo.symlink_to(tmp_path/'out.jpg')
    for lst in (None, 'train_cluster2.txt'):        # read from the folder, and from a list (paths on the resolved root)
        with pytest.raises(Exception, match=f'{name}.jpg: a link to .* outside the data folder'):
            UserDataset(via, lst)


def test_only_the_first_rank_moves_a_damaged_checkpoint(tmp_path, monkeypatch):
    "Under DDP every rank resumes: all read checkpoint.prev.pt when checkpoint.pt is damaged, only rank 0 moves it aside and warns."
    import warnings
    import torch
    from pis_nb.train import checkpoint_to_resume, save_checkpoint, keep_previous
    ck = tmp_path/'checkpoint.pt'
    save_checkpoint({'model': {'w': torch.arange(64.)}, 'step': 1}, ck); keep_previous(ck)
    save_checkpoint({'model': {'w': torch.arange(64.)}, 'step': 2}, ck)
    _garble(ck)
    monkeypatch.setenv('RANK', '1')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert checkpoint_to_resume(tmp_path).name == 'checkpoint.prev.pt'
    assert ck.is_file() and not caught                          # rank 1 leaves it for rank 0
    monkeypatch.setenv('RANK', '0')
    with pytest.warns(UserWarning, match='checkpoint.pt: damaged'):
        assert checkpoint_to_resume(tmp_path).name == 'checkpoint.prev.pt'
    assert not ck.exists() and (tmp_path/'checkpoint.pt.damaged').is_file()
    _garble(tmp_path/'checkpoint.prev.pt'); shutil.copy(tmp_path/'checkpoint.prev.pt', ck)
    with pytest.raises(Exception, match='both damaged'):
        checkpoint_to_resume(tmp_path)


def test_no_room_for_the_previous_checkpoint_is_a_warning(tmp_path, monkeypatch):
    "Without hard links and without room for a copy, the previous checkpoint is not kept: a warning, and the run goes on."
    import errno, os
    import torch
    from pis_nb.train import keep_previous, save_checkpoint
    ck = save_checkpoint({'model': {'w': torch.ones(3)}, 'step': 1}, tmp_path/'checkpoint.pt')
    monkeypatch.setattr(os, 'link', lambda *a: (_ for _ in ()).throw(OSError(errno.EPERM, 'Operation not permitted')))
    monkeypatch.setattr(shutil, 'copyfile', lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, 'No space left on device')))
    with pytest.warns(UserWarning, match='the previous checkpoint could not be kept .No space left on device'):
        assert keep_previous(ck) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint.pt']
