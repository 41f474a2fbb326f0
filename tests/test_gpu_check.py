"""benchmarks/gpu_check.sh, the one-command GPU check, in its CPU dry run: it runs end to end without a GPU and writes
its table (the real run needs a CUDA GPU; the figures it gave are in the README when one was lent)."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_dry_run(tmp_path):
    env = {**os.environ, 'OUT_DIR': str(tmp_path), 'PYTHON': sys.executable}
    p = subprocess.run(['bash', str(ROOT/'benchmarks'/'gpu_check.sh'), '--cpu-dry-run'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    table = (tmp_path/'gpu-check.txt').read_text()
    assert 'CPU dry run' in table and 'two-stage train' in table
    rows = json.loads((tmp_path/'gpu-check.json').read_text())['rows']
    assert [r['backbone'] for r in rows] == ['small']
    r = rows[0]
    assert r['s_step'] > 0 and r['train_img_s'] > 0 and r['eval_img_s'] > 0
    assert r['gflop_step'] > 0.01                      # FlopCounterMode counted the step's convolutions
    listed = (tmp_path/'notebooks.txt').read_text()
    assert 'would run the cuda cells of' in listed and 'nbs/06_train.ipynb' in listed


def test_gpu_check_refuses_without_gpu(tmp_path):
    import torch
    if torch.cuda.is_available(): return                # on a GPU machine the real run is the check
    p = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'gpu_check.py'), '--out', str(tmp_path/'x.txt')],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and 'no CUDA GPU' in p.stdout and not (tmp_path/'x.txt').exists()


def test_bf16_peak_table():
    sys.path.insert(0, str(ROOT/'benchmarks'))
    from gpu_check import bf16_peak
    assert bf16_peak('NVIDIA H200') == 989.5 and bf16_peak('NVIDIA A100-SXM4-80GB') == 312.0
    assert bf16_peak('NVIDIA L40S') == 362.0 and bf16_peak('NVIDIA L4') == 121.0   # the longer name wins
    assert bf16_peak('Some Future GPU') is None
