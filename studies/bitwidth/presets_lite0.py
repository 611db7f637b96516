#!/usr/bin/env python
"""Top-1 agreement of the pretrained EfficientNet-Lite0 under each backend preset, measured by condbook's emulation (issue 38).

Photos: the first calibration + images photos of the labelled sample (`--data`, default ../shared/data/imagenet-sample),
split by a seeded permutation (`study_split`) into
calibration photos (the presets' min-max ranges) and evaluation photos. For each preset of `condbook.backends.PRESETS` and
each width: the share of evaluation photos whose top-1 class the rounded network keeps (weights and activations at one
width), with its binomial standard deviation. Written as CSV.

    .venv/bin/python studies/bitwidth/presets_lite0.py [--calibration 32] [--images 96] [--out studies/bitwidth/presets_lite0.csv]
"""
import argparse, dataclasses, math
from pathlib import Path
import pandas as pd
import torch
from condbook.backends import PRESETS, observe, spec_agreement
from condbook.bitwidth import study_split
from condbook.data import batches, image_folder
from condbook.estimator import Estimator
from condbook.models import load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default='../shared/data/imagenet-sample')
    ap.add_argument('--calibration', type=int, default=32); ap.add_argument('--images', type=int, default=96)
    ap.add_argument('--widths', default='4,6,8'); ap.add_argument('--out', default='studies/bitwidth/presets_lite0.csv')
    ap.add_argument('--ablate', default=None, help='a preset: change one field at a time at the widest width instead')
    a = ap.parse_args()
    model = load_model('efficientnet_lite0', 'imagenet')
    images = image_folder(Path(a.data), limit=a.calibration + a.images)  # the first photos of the sorted folder
    x, _, _ = next(batches(images, model.transform, batch_size=a.calibration + a.images))
    cal, ev = study_split(len(x), a.calibration)
    x_cal, x_ev = x[cal], x[ev[:a.images]]
    est, rows = Estimator(model, tuple(x.shape[1:])), []
    specs = PRESETS
    if a.ablate:
        base = PRESETS[a.ablate]
        changes = dict(placement='after', reduce_range=False, round_logits=False, weight_range='narrow', shared_ranges=False)
        specs = {a.ablate: base} | {f'{a.ablate}, {k}={v!r}': dataclasses.replace(base, **{k: v}) for k, v in changes.items() if getattr(base, k) != v}
        specs[f'{a.ablate}, all of them'] = dataclasses.replace(base, **changes)
    for name, spec in specs.items():
        r = observe(est, x_cal, spec)
        for b in map(int, a.widths.split(',')):
            kept = spec_agreement(est, x_ev, spec, b, r)
            rows.append(dict(preset=name, bits=b, kept=round(kept * len(x_ev)), images=len(x_ev), agreement=kept,
                             sd=math.sqrt(max(kept * (1 - kept), 1e-12) / len(x_ev))))
            print(rows[-1], flush=True)
    pd.DataFrame(rows).to_csv(a.out, index=False)


if __name__ == '__main__': main()
