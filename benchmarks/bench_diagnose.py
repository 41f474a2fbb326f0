"Measurements that locate a bench's failing findings (13_bench): error breakdown and class-prior headroom of the source and ours S1 models, context sensitivity of ours S1, pseudo-label quality of ours S2."
# usage: python benchmarks/bench_diagnose.py BENCH_DIR DATA_DIR [OUT.csv]  (a finished medium-size bench folder, its PIS-Synth folder)
import sys, warnings
import pandas as pd
from pathlib import Path
from pis_nb.bench import context_sensitivity, class_prior_headroom, pseudo_label_quality
from pis_nb.train import load_model
warnings.filterwarnings('ignore')
b, data = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for seed in (0, 1, 2):
    for user in ('id1', 'id2'):
        ur = data/'personal'/user
        for name, run in (('source', b/'runs'/'source'/f'seed{seed}'), ('ours_s1', b/'runs'/'1'/'ours_s1'/user/f'seed{seed}'),
                          ('ours_s2', b/'runs'/'1'/'ours_s2'/user/f'seed{seed}')):
            m = load_model(run)[0].eval()
            h = class_prior_headroom(m, ur, 'bench_kauto.txt', eval_size=64, batch_size=8)
            r = dict(model=name, user=user, seed=seed, fiou=h.loc['predicted', 'fiou'], fg_missed=h.loc['predicted', 'fg_missed'],
                     fg_correct=h.loc['predicted', 'fg_correct'], bg_false=h.loc['predicted', 'bg_false'],
                     own=h.loc['own', 'fiou'] - h.loc['predicted', 'fiou'], mates=h.loc['group_mates', 'fiou'] - h.loc['predicted', 'fiou'],
                     mates_recall=h.loc['group_mates', 'class_recall'], random_recall=h.loc['random_photos', 'class_recall'])
            if name == 'ours_s1':
                c = context_sensitivity(m, ur, 'bench_kauto.txt', eval_size=64, batch_size=8)
                r.update(alone_changed=c.loc['alone', 'changed_pixels'], shuffled_changed=c.loc['shuffled', 'changed_pixels'],
                         alone_dfiou=c.loc['alone', 'fiou'] - c.loc['group', 'fiou'], shuffled_dfiou=c.loc['shuffled', 'fiou'] - c.loc['group', 'fiou'])
            if name == 'ours_s2':
                r.update({f'pl_{k}': v for k, v in pseudo_label_quality(run/'pseudo', ur).items()})
            rows.append(r); print(r, flush=True)
df = pd.DataFrame(rows)
df.to_csv(sys.argv[3] if len(sys.argv) > 3 else b/'diagnose.csv', index=False)
pd.set_option('display.width', 250); pd.set_option('display.max_columns', 40)
print(df.groupby('model').mean(numeric_only=True).round(2).T)
print(df.groupby(['model', 'user']).mean(numeric_only=True).round(2).T)
