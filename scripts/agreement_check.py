#!/usr/bin/env python
"""Predicted against measured agreement of EfficientNet-Lite0 as deployed, on the bit-width study's photos: the linearised
Gaussian model (`predict_agreement(..., pairs=0)`) and the sampled statistical model (`pairs` antithetic pairs of draws).

    OMP_NUM_THREADS=2 python scripts/agreement_check.py [--targets weights activations both] [--pairs 4] [--widths 4 5 6 7 8]
                                                        [--format fixed|fp16|bf16|fp8_e4m3|fp8_e5m2] [--per-tensor]
                                                        [--calibration max|percentile] [--batch 100]
                                                        [--out report/bitwidth/agreement-check]

The study's split (`study_split`, seed 0): its 200 calibration photos give the static ranges (max), its 600 evaluation
photos are predicted and measured in batches of --batch. Weights: per output channel (--per-tensor: one scale per tensor),
BatchNorm folded; activations: static per-tensor ranges (--calibration percentile: the 99.99th percentile of |t|). A
floating-point --format rounds to that format instead (no widths; the rows' bits are its total bits), as the study's float
table does. Per batch, target and width the per-image rows (linearised and sampled probability of keeping the top-1
class, and whether real quantization kept it) are written to rows/[<variant>-]<target>-<pairs>/<start>.csv.gz (variant: the
float format, per-tensor, percentile; none for the defaults), so that a stopped run
goes on where it stopped; the summary (percent of the images, per target and width) is printed and written to
agreement-<target>-<pairs>.csv. With --draws, each draw's outcome is kept too (columns draw_0, ...; the draws of
`sampled_agreement`, seed i and its mirror), and the summary gains the agreement of the single draws (min, max, standard
deviation) and the standard error of the sampled prediction (the sd of the pairs' means over √pairs): a draw of the weights
is one network for every batch (its noise depends on the seed alone), so this is how much the agreement of one rounding may
differ from its expectation, and how well a few pairs of draws know that expectation. Rows are written to
rows/<target>-<pairs>-draws/. --seed s adds pairs of draws to such a run of s pairs (seeds 0 to s - 1) without measuring
again: to rows/<target>-draws-seed<s>/, merged with it in its summary.
"""
import argparse, sys, time
from pathlib import Path
import pandas as pd, torch
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from condbook.data import default_data  # $CONDBOOK_DATA, else ../shared/data/imagenet-sample
from condbook.bitwidth import FLOAT_FORMATS, STUDY_SETTINGS, Fixed, Roundoff, Widths, calibrate
from margin_check import study_photos  # the same network, photos and split

def deployed_photos(data:str, n=None, method='max')->tuple:
    "(estimator, photos, the first `n` evaluation indices, static ranges (`method`) from the 200 calibration photos): the study's split, deployed."
    est, x, cal, ev = study_photos(data)
    return est, x, ev[:n], calibrate(est, x[cal], method)

def check_format(name:str, target:str, b:int, per_channel=True):
    "The format that rounds `target`: fixed point at `b` bits (weights per channel or per tensor), or the floating-point format `name`."
    if name != 'fixed': return FLOAT_FORMATS[name]
    return {'weights': Widths(Fixed(b, per_channel), None), 'activations': Widths(None, Fixed(b)), 'both': Widths(Fixed(b, per_channel), Fixed(b))}[target]

def study_setting(name:str, target:str, per_tensor=False, calibration='max'):
    "The name the bit-width study gives this setting (its `STUDY_SETTINGS` entry, or the float format's name); None if the study has no such setting."
    if name != 'fixed': return name
    return next((s for s, t, per_channel, c in STUDY_SETTINGS if t == target and per_channel != per_tensor and c in (None, calibration)), None)

def pending_batches(folder:Path, est, x:torch.Tensor, ev:torch.Tensor, batch:int, calibration):
    "(rows file, position of the batch in `ev`, photo indices, `Roundoff`) of each batch of the evaluation photos `ev` whose rows file folder/<start>.csv.gz is not written yet."
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(ev), batch):
        path, idx = folder/f'{start:04d}.csv.gz', ev[start:start + batch]
        if not path.exists(): yield path, start, idx, Roundoff(est, x[idx], draws=0, calibration=calibration, fold_batchnorm=True)

def draw_columns(ro:Roundoff, fmt, target:str, pairs:int, seed=0)->dict:
    "Row columns: the sampled prediction per photo and each draw's outcome (`kept_by_draws`: draw_2s is seed s, draw_2s+1 its mirror)."
    each = ro.kept_by_draws(fmt, target, pairs, seed).double().cpu()
    return dict(sampled=each.mean(0).numpy(), **{f'draw_{2 * seed + j}': d.numpy() for j, d in enumerate(each)})

def draw_spread(grouped)->dict:
    """Per group of rows: the agreement of the single draws in % (each draw's over the photos), its min, max and standard deviation;
    `photo sd`, the standard deviation a draw's agreement would have if each photo kept its class by its own chance, independently
    (√(Σ p(1 − p))/photos, p(1 − p) estimated without bias from each photo's draws): what activation draws, fresh for every photo, have,
    and the part of a weight draw's spread that is not shared between photos; the standard error of the sampled prediction (their
    mean: the sd of the pairs' means over √pairs; NaN for one pair); and each draw's."""
    draws = sorted((c for c in grouped.obj if c.startswith('draw_')), key=lambda c: int(c[5:]))
    per_draw = 100 * grouped[draws].mean()
    pairs = per_draw.set_axis([int(c[5:]) // 2 for c in draws], axis=1).T.groupby(level=0).mean().T  # a pair: seed s and its mirror
    def photo_sd(d):
        k, p = d.count(axis=1), d.mean(axis=1)
        return 100 * (p * (1 - p) * k / (k - 1)).sum() ** .5 / len(d) if (k > 1).all() else float('nan')
    return {'draw min': per_draw.min(axis=1).round(2), 'draw max': per_draw.max(axis=1).round(2), 'draw sd': per_draw.std(axis=1).round(2),
            'photo sd': grouped[draws].apply(photo_sd).round(2), 'sampled se': (pairs.std(axis=1) / pairs.count(axis=1) ** .5).round(2),
            **per_draw.round(2)}

def read_rows(folder:Path)->pd.DataFrame:
    "The rows of every batch in `folder` (None if it has none yet)."
    files = sorted(folder.glob('*.csv.gz'))
    return pd.concat([pd.read_csv(f) for f in files]) if files else None

def merged_rows(folder:Path, extras:list, keys:list)->pd.DataFrame:
    """The rows in `folder` with the draws of later seeds (the rows in each of the folders `extras`) beside them, matched on the photo
    and `keys`, where a draw has every photo of its group (a run still going adds nothing); `sampled`: the mean of all the draws."""
    rows, more = read_rows(folder), [r for r in map(read_rows, extras) if r is not None]
    if not more: return rows
    for r in more: rows = rows.merge(r.drop(columns='sampled'), on=['image', *keys], how='left')
    draws = [c for c in rows if c.startswith('draw_')]
    whole = rows[draws].notna().groupby([rows[k] for k in keys]).transform('all')  # [rows, draws]: the draw has the whole group
    return rows.assign(**{c: rows[c].where(whole[c]) for c in draws}, sampled=rows[draws].where(whole).mean(axis=1))

def seed_folders(folder:Path)->list:
    "The folders of later seeds' draws for the rows in `folder` (<prefix>-<pairs>-draws): its siblings <prefix>-draws-seed<s>."
    prefix = folder.name.rsplit('-', 2)[0]
    return sorted(folder.parent.glob(f'{prefix}-draws-seed*')) if folder.name.endswith('-draws') else []

def summarise(folder:Path, setting:str, target:str)->pd.DataFrame:
    "Per width, the agreement in % of the rows in `folder` (linearised, sampled, measured; with the draws of later seeds) and, where each draw was kept, of the single draws."
    rows = merged_rows(folder, seed_folders(folder), ['target', 'bits'])
    summary = (100 * rows.groupby('bits')[[c for c in ('linearised', 'sampled', 'measured') if c in rows]].mean()).round(2)
    summary.insert(0, 'photos', rows.groupby('bits').size())
    summary.insert(0, 'target', target)
    summary.insert(0, 'setting', setting)
    summary['sampled - measured'] = (summary.sampled - summary.measured).round(2)
    return summary.assign(**draw_spread(rows.groupby('bits'))) if 'draw_0' in rows else summary

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--targets', nargs='+', default=['weights', 'activations'], choices=['weights', 'activations', 'both'])
    p.add_argument('--pairs', type=int, default=4, help='antithetic pairs of draws per width')
    p.add_argument('--widths', type=int, nargs='+', default=[4, 5, 6, 7, 8])
    p.add_argument('--batch', type=int, default=100, help='evaluation photos per batch (and per rows file)')
    p.add_argument('--format', default='fixed', choices=['fixed', *(k for k in FLOAT_FORMATS if k != 'fp32')], help='fixed point, or a floating-point format (no widths)')
    p.add_argument('--per-tensor', action='store_true', help='fixed-point weights with one scale per tensor (default: per output channel)')
    p.add_argument('--calibration', default='max', choices=['max', 'percentile'], help='static activation ranges from the calibration photos')
    p.add_argument('--n', type=int, default=None, help='only the first n evaluation photos')
    p.add_argument('--draws', action='store_true', help="keep each draw's outcome")
    p.add_argument('--seed', type=int, default=0, help="the first pair's seed; above 0 (with --draws), more draws for the rows of an earlier run of seeds 0 to seed - 1")
    p.add_argument('--no-linearised', action='store_true', help="skip the linearised prediction (the study's rows hold it for the same photos; it costs more than the draws of a float format)")
    p.add_argument('--data', default=default_data())
    p.add_argument('--out', default=str(ROOT/'report'/'bitwidth'/'agreement-check'))
    a = p.parse_args(argv)
    t0, out = time.time(), Path(a.out)
    if a.format != 'fixed' and a.per_tensor: p.error('--per-tensor is for fixed point')
    if a.seed and not a.draws: p.error('--seed adds draws: it needs --draws')
    settings = {t: study_setting(a.format, t, a.per_tensor, a.calibration) for t in a.targets}
    if None in settings.values(): p.error(f'not a setting of the bit-width study: {[t for t, s in settings.items() if s is None]} with these options')
    est, x, ev, calibration = deployed_photos(a.data, a.n, a.calibration)
    widths = [FLOAT_FORMATS[a.format].bits] if a.format != 'fixed' else a.widths
    variant = '-'.join(v for v, on in ((a.format, a.format != 'fixed'), ('per-tensor', a.per_tensor), ('percentile', a.calibration != 'max')) if on)
    for target in a.targets:
        prefix = f"{variant + '-' if variant else ''}{target}"
        name = f"{prefix}-{a.seed if a.seed else a.pairs}{'-draws' if a.draws else ''}"  # a later seed's draws join the run of seeds 0 to seed - 1
        folder = out/'rows'/(f'{prefix}-draws-seed{a.seed}' if a.seed else name)
        if a.seed and not (out/'rows'/name).exists(): p.error(f'--seed {a.seed}: no rows of seeds 0 to {a.seed - 1} in {out/"rows"/name}')
        for path, start, idx, ro in pending_batches(folder, est, x, ev, a.batch, calibration):
            rows = []
            for b in widths:
                f = check_format(a.format, target, b, not a.per_tensor)
                cols = dict(image=idx.numpy(), target=target, bits=b)
                if not (a.no_linearised or a.seed): cols['linearised'] = ro.agreement(f, target).cpu().numpy()
                if a.draws: cols |= draw_columns(ro, f, target, a.pairs, a.seed)  # the draws of `sampled_agreement`, one by one
                else: cols['sampled'] = ro.sampled_agreement(f, target, a.pairs).cpu().numpy()
                if not a.seed: cols['measured'] = ro.measure(f, target)[1].double().cpu().numpy()
                rows.append(pd.DataFrame(cols))
            pd.concat(rows).to_csv(path, index=False)
            print(f'{target} photos {start}-{start + len(idx)}: {time.time() - t0:.0f} s', flush=True)
        summary = summarise(out/'rows'/name, settings[target], target)
        summary.to_csv(out/f'agreement-{name}.csv')
        print(target, f'(pairs {a.pairs})', summary.to_string(), sep='\n', flush=True)
    print(f'{time.time() - t0:.0f} s')

if __name__ == '__main__': main()
