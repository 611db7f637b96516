#!/usr/bin/env python
"""Predicted against measured agreement of EfficientNet-Lite0 as deployed, on the bit-width study's photos: the linearised
Gaussian model (`predict_agreement(..., pairs=0)`) and the sampled statistical model (`pairs` antithetic pairs of draws).

    OMP_NUM_THREADS=2 python scripts/agreement_check.py [--targets weights activations] [--pairs 4] [--widths 4 5 6 7 8]
                                                        [--batch 100] [--out report/bitwidth/agreement-check]

The study's split (`study_split`, seed 0): its 200 calibration photos give the static ranges (max), its 600 evaluation
photos are predicted and measured in batches of --batch. Weights: per output channel, BatchNorm folded; activations: static
per-tensor ranges. Per batch, target and width the per-image rows (linearised and sampled probability of keeping the top-1
class, and whether real quantization kept it) are written to rows/<target>-<pairs>/<start>.csv.gz, so that a stopped run
goes on where it stopped; the summary (percent of the images, per target and width) is printed and written to
agreement-<target>-<pairs>.csv. With --draws, each draw's outcome is kept too (columns draw_0, ...; the draws of
`sampled_agreement`, seed i and its mirror), and the summary gains the agreement of the single draws (min, max, standard
deviation): a draw of the weights is one network for every batch (its noise depends on the seed alone), so this is how
much the agreement of one rounding may differ from its expectation. Rows are written to rows/<target>-<pairs>-draws/.
"""
import argparse, sys, time
from pathlib import Path
import pandas as pd, torch
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from condbook.bitwidth import Fixed, Roundoff, Widths, calibrate
from margin_check import study_photos  # the same network, photos and split

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--targets', nargs='+', default=['weights', 'activations'], choices=['weights', 'activations', 'both'])
    p.add_argument('--pairs', type=int, default=4, help='antithetic pairs of draws per width')
    p.add_argument('--widths', type=int, nargs='+', default=[4, 5, 6, 7, 8])
    p.add_argument('--batch', type=int, default=100, help='evaluation photos per batch (and per rows file)')
    p.add_argument('--n', type=int, default=None, help='only the first n evaluation photos')
    p.add_argument('--draws', action='store_true', help="keep each draw's outcome")
    p.add_argument('--data', default=str(ROOT.parent/'shared'/'data'/'imagenet-sample'))
    p.add_argument('--out', default=str(ROOT/'report'/'bitwidth'/'agreement-check'))
    a = p.parse_args(argv)
    t0, out = time.time(), Path(a.out)
    est, x, cal, ev = study_photos(a.data)
    ev = ev[:a.n]
    calibration = calibrate(est, x[cal])
    fmt = lambda t, b: {'weights': Widths(Fixed(b, True), None), 'activations': Widths(None, Fixed(b)), 'both': Widths(Fixed(b, True), Fixed(b))}[t]
    for target in a.targets:
        name = f"{target}-{a.pairs}{'-draws' if a.draws else ''}"
        folder = out/'rows'/name
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(ev), a.batch):
            path = folder/f'{start:04d}.csv.gz'
            if path.exists(): continue
            ro = Roundoff(est, x[ev[start:start + a.batch]], draws=0, calibration=calibration)
            rows = []
            for b in a.widths:
                f = fmt(target, b)
                kept = ro.measure(f, target)[1]
                cols = dict(image=ev[start:start + a.batch].numpy(), target=target, bits=b, linearised=ro.agreement(f, target).cpu().numpy())
                if a.draws:  # the draws of `sampled_agreement`, one by one
                    each = ro.kept_by_draws(f, target, a.pairs).double().cpu()
                    cols |= dict(sampled=each.mean(0).numpy(), **{f'draw_{j}': d.numpy() for j, d in enumerate(each)})
                else: cols['sampled'] = ro.sampled_agreement(f, target, a.pairs).cpu().numpy()
                rows.append(pd.DataFrame(dict(cols, measured=kept.double().cpu().numpy())))
            pd.concat(rows).to_csv(path, index=False)
            print(f'{target} photos {start}-{start + len(ro.x)}: {time.time() - t0:.0f} s', flush=True)
        rows = pd.concat([pd.read_csv(f) for f in sorted(folder.glob('*.csv.gz'))])
        summary = (100 * rows.groupby('bits')[[c for c in ('linearised', 'sampled', 'measured') if c in rows]].mean()).round(2)
        summary.insert(0, 'photos', rows.groupby('bits').size())
        summary['sampled - measured'] = (summary.sampled - summary.measured).round(2)
        if a.draws:
            per_draw = 100 * rows.groupby('bits')[[c for c in rows if c.startswith('draw_')]].mean()  # [widths, draws]: each draw's agreement
            summary['draw min'], summary['draw max'], summary['draw sd'] = per_draw.min(axis=1).round(2), per_draw.max(axis=1).round(2), per_draw.std(axis=1).round(2)
        summary.to_csv(out/f'agreement-{name}.csv')
        print(target, f'(pairs {a.pairs})', summary.to_string(), sep='\n', flush=True)
    print(f'{time.time() - t0:.0f} s')

if __name__ == '__main__': main()
