#!/usr/bin/env python
"""Where the statistical bit-width model goes wrong at coarse widths: the measured change of each photo's top-2 margin against
the linearised σ that predicts it (EfficientNet-Lite0, deployed: BatchNorm folded, weights per channel, static activation ranges).

    OMP_NUM_THREADS=2 python scripts/margin_check.py [--n 96] [--out report/bitwidth/margin-check]

Calibration: 64 of the bit-width study's calibration photos (`study_split`, seed 0); evaluation: the first --n of its evaluation
photos. Per target and width, over the photos: the predicted agreement (`Roundoff.agreement`) and the measured one; and
r = Δm/σ, Δm the measured change of the margin between the clean top-1 and top-2 logits (against the reference logits: the
clipped network for static activations), σ its linearised standard deviation (`Roundoff.margin_sigma`). If the model holds,
r has mean 0 and RMS 1. Writes margin-check.csv and prints it.
"""
import argparse, math, sys, time
from pathlib import Path
import pandas as pd, torch
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from condbook.data import default_data  # $CONDBOOK_DATA, else ../shared/data/imagenet-sample
from condbook.bitwidth import Fixed, Roundoff, Widths, _AtPoints, calibrate, rounded_weights, study_split
from condbook.core import full_precision
from condbook.data import image_folder
from condbook.estimator import Estimator
from condbook.models import load_model

def study_photos(data:str)->tuple:
    "(estimator of EfficientNet-Lite0, the photos of `data` as it reads them, calibration indices, evaluation indices): the bit-width study's split."
    model = load_model('efficientnet_lite0', 'imagenet')
    images = image_folder(data)
    x = torch.stack([images.load(i, model.transform) for i in range(len(images))])
    return (Estimator(model, model.input_shape), x, *study_split(len(x), 200, 0))

def deployed_analysis(data:str, n:int)->Roundoff:
    "EfficientNet-Lite0 as deployed (static ranges from 64 of the study's calibration photos) at the first `n` of its evaluation photos."
    est, x, cal, ev = study_photos(data)
    return Roundoff(est, x[ev[:n]], draws=0, calibration=calibrate(est, x[cal[:64]]), fold_batchnorm=True)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=96, help='evaluation photos')
    p.add_argument('--data', default=default_data())
    p.add_argument('--out', default=str(ROOT/'report'/'bitwidth'/'margin-check'))
    a = p.parse_args(argv)
    t0 = time.time()
    ro = deployed_analysis(a.data, a.n)
    est = ro.est
    logits = ro.logits.double()
    top2, rows, out = logits.topk(2, 1).indices, torch.arange(len(logits)), []
    margin = lambda l: l[rows, top2[:, 0]] - l[rows, top2[:, 1]]
    for target in ('weights', 'activations'):
        for b in range(4, 9):
            fmt = Widths(Fixed(b, True), None) if target == 'weights' else Widths(None, Fixed(b))
            sigma, predicted = ro.margin_sigma(fmt, target).double(), ro.agreement(fmt, target).double()
            with torch.no_grad(), full_precision():
                if target == 'weights':
                    with rounded_weights(ro.rounded, fmt.weights, ro.folds, biases=False): y = est.gm(ro.x).double()
                else: y = _AtPoints(est.gm, ro.rounders(fmt.activations)).run(ro.x).double()
            r = (margin(y) - margin(ro.reference_logits(fmt, target).double())) / sigma
            kept = y.argmax(1) == logits.argmax(1)
            out.append(dict(target=target, bits=b, predicted=100 * predicted.mean().item(), measured=100 * kept.double().mean().item(),
                            r_mean=r.mean().item(), r_rms=r.square().mean().sqrt().item(),
                            lost_to_runner_up=100 * (~kept & (y.argmax(1) == top2[:, 1])).double().mean().item(),
                            lost_to_another=100 * (~kept & (y.argmax(1) != top2[:, 1])).double().mean().item()))
    df = pd.DataFrame(out).round(3)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    df.to_csv(Path(a.out)/'margin-check.csv', index=False)
    print(df.to_string(index=False), f'\n{a.n} photos, {time.time() - t0:.0f} s', flush=True)

if __name__ == '__main__': main()
