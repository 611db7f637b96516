#!/usr/bin/env python
"""The bit-width study's allocations measured again on this machine, with the spread of one rounding: EfficientNet-Lite0 as
deployed, on the study's 600 evaluation photos.

    OMP_NUM_THREADS=2 python scripts/allocation_check.py [--pairs 2] [--sampled statistical hessian] [--batch 100]
                                                         [--study report/bitwidth/efficientnet_lite0-imagenet-800]
                                                         [--out report/bitwidth/allocation-check]

Reads the allocations the study chose on its 200 calibration photos (allocations.csv: four methods, budgets 4, 5 and 6 bits
per weight, activations in float and at 8 bits on static max ranges). For each allocation and evaluation photo it writes
whether really rounding the weights (per output channel) kept the top-1 class, the linearised prediction, and, for the
methods in --sampled, each of the 2·pairs draws of the sampled statistical model (`Roundoff.kept_by_draws`, seeds i and
their mirrors). A weight draw is one network for every photo, so the agreement of a single draw over the 600 photos is
the agreement of one possible rounding: their spread says how far one real rounding can fall from the expectation.
Rows go to rows/<start>.csv.gz per batch (a stopped run goes on where it stopped); the summary, per activation width,
budget and method (agreement in %; the single draws' min, max and standard deviation, and the standard error of the sampled
prediction), to allocation-check.csv. --seed s (s = the pairs already run) adds pairs of draws of the --sampled methods,
seeds s, s + 1, ..., without measuring again: to rows-seed<s>/, merged with the rows in the summary.
"""
import argparse, sys, time
from pathlib import Path
import pandas as pd
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from condbook.data import default_data  # $CONDBOOK_DATA, else ../shared/data/imagenet-sample
from condbook.bitwidth import Widths, make_formats
from agreement_check import deployed_photos, draw_columns, draw_spread, merged_rows, pending_batches  # the same network, photos, split and rows

def allocations(study:Path)->dict:
    "{(activation bits or None, method, budget): bits per module} of the study."
    t = pd.read_csv(study/'allocations.csv', dtype={'activations': 'Int64'})
    return {(None if pd.isna(a) else int(a), m, int(b)): pd.Series(g.bits.to_numpy(), index=g.module)
            for (a, m, b), g in t.groupby(['activations', 'method', 'budget'], dropna=False, sort=False)}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pairs', type=int, default=2, help='antithetic pairs of draws per allocation')
    p.add_argument('--sampled', nargs='*', default=['statistical', 'hessian'], help='methods whose draws are run')
    p.add_argument('--seed', type=int, default=0, help="the first pair's seed; above 0, more draws of the --sampled methods alone, added to the rows of seed 0")
    p.add_argument('--batch', type=int, default=100, help='evaluation photos per batch (and per rows file)')
    p.add_argument('--n', type=int, default=None, help='only the first n evaluation photos')
    p.add_argument('--data', default=default_data())
    p.add_argument('--study', default=str(ROOT/'report'/'bitwidth'/'efficientnet_lite0-imagenet-800'))
    p.add_argument('--out', default=str(ROOT/'report'/'bitwidth'/'allocation-check'))
    a = p.parse_args(argv)
    t0, out, allocs = time.time(), Path(a.out), allocations(Path(a.study))
    est, x, ev, calibration = deployed_photos(a.data, a.n)
    folder = out/('rows' if a.seed == 0 else f'rows-seed{a.seed}')
    for path, start, idx, ro in pending_batches(folder, est, x, ev, a.batch, calibration):
        rows = []
        for (act, method, budget), bits in allocs.items():
            if a.seed and method not in a.sampled: continue
            fmt = make_formats('fixed', bits if act is None else Widths(bits, act), True)
            target = 'weights' if act is None else 'both'
            cols = dict(image=idx.numpy(), activations=act or 0, method=method, budget=budget)
            if a.seed == 0: cols |= dict(measured=ro.measure(fmt, target)[1].double().cpu().numpy(), linearised=ro.agreement(fmt, target).cpu().numpy())
            if method in a.sampled: cols |= draw_columns(ro, fmt, target, a.pairs, a.seed)
            rows.append(pd.DataFrame(cols))
        pd.concat(rows).to_csv(path, index=False)
        print(f'photos {start}-{start + len(idx)}: {time.time() - t0:.0f} s', flush=True)
    keys = ['activations', 'budget', 'method']
    rows = merged_rows(out/'rows', sorted(out.glob('rows-seed*')), keys)
    g = rows.groupby(keys)
    summary = (100 * g[[c for c in ('measured', 'linearised', 'sampled') if c in rows]].mean()).round(2)
    summary.insert(0, 'photos', g.size())
    if any(c.startswith('draw_') for c in rows): summary = summary.assign(**draw_spread(g))
    summary.to_csv(out/'allocation-check.csv')
    print(summary.to_string(), f'{time.time() - t0:.0f} s', sep='\n')

if __name__ == '__main__': main()
