#!/usr/bin/env python
"""What predicting agreement costs against measuring it (issue 38, "prediction cheaper than measurement").

One network, one batch of images, W8A8-style deployed rounding (BatchNorm folded, weights per channel, static activation
ranges from other images). Times, on this machine: measuring the agreement at one width; predicting it at the 15 widths
2-16 with the linearised Gaussian model (`pairs=0`: per-sample sensitivities, then no forward pass) and with the sampled
model (`pairs=4`: 8 forward passes per width, estimated from one width); the Gaussian prediction with every family of
sensitivities computed (as before issue 38) and again on the same analysis (the sensitivities reused: the widths alone).

    .venv/bin/python studies/bitwidth/prediction_cost.py [--model resnet18] [--size 64] [--images 16] [--target both]
"""
import argparse, json, time
import torch
from condbook.bitwidth import Roundoff, calibrate, make_formats, measure_agreement, predict_agreement
from condbook.estimator import Estimator
from condbook.models import load_model


def timed(fn):
    t = time.perf_counter(); out = fn(); return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default='resnet18'); ap.add_argument('--size', type=int, default=64)
    ap.add_argument('--images', type=int, default=16); ap.add_argument('--target', default='both')
    ap.add_argument('--out', default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = load_model(a.model, 'untrained') if a.model != 'efficientnet_lite0' else load_model(a.model, 'imagenet')
    shape = (3, a.size, a.size)
    g = torch.Generator().manual_seed(0)
    x, x_cal = torch.rand(a.images, *shape, generator=g), torch.rand(32, *shape, generator=g)
    est = Estimator(model, shape)
    cal = calibrate(est, x_cal)
    widths = list(range(2, 17))
    row = dict(model=a.model, size=a.size, images=a.images, target=a.target, threads=torch.get_num_threads())
    kw = dict(calibration=cal, est=est, fold_batchnorm=True)
    _, row['measure_one_width_s'] = timed(lambda: measure_agreement(model, x, 'fixed', a.target, 8, **kw))
    _, row['gaussian_2_16_s'] = timed(lambda: predict_agreement(model, x, 'fixed', a.target, widths, pairs=0, **kw))
    ro = Roundoff(est, x, draws=0, calibration=cal, fold_batchnorm=True)  # every family of sensitivities (as before issue 38)
    _, row['gaussian_2_16_every_family_s'] = timed(lambda: predict_agreement(ro, x, 'fixed', a.target, widths, pairs=0))
    _, row['gaussian_2_16_reusing_sensitivities_s'] = timed(lambda: predict_agreement(ro, x, 'fixed', a.target, widths, pairs=0))
    _, row['sampled_one_width_s'] = timed(lambda: predict_agreement(ro, x, 'fixed', a.target, 8, pairs=4))
    row['sampled_2_16_s_estimated'] = row['sampled_one_width_s'] * len(widths)
    row['gaussian_2_16_over_measure_one'] = row['gaussian_2_16_s'] / row['measure_one_width_s']
    row['sampled_2_16_over_measure_one'] = row['sampled_2_16_s_estimated'] / row['measure_one_width_s']
    print(json.dumps(row, indent=1))
    if a.out:
        with open(a.out, 'w') as f: json.dump(row, f, indent=1)


if __name__ == '__main__': main()
