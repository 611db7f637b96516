#!/usr/bin/env python
"""Does a second-order mean shift of the logits close the statistical bit-width model's gap at 4-5 bits?

    OMP_NUM_THREADS=2 python scripts/shift_check.py [--n 96] [--pairs 4] [--out report/bitwidth/margin-check]

The same network and photos as scripts/margin_check.py (its `deployed_analysis`) (EfficientNet-Lite0 as deployed, weights per output channel, 64
calibration photos for the static ranges, the first --n evaluation photos of the study's split). Per width b, the shift
E[f(θ + v)] − f(θ) of every logit under rounding-like noise v (each weight moved by U(−s/2, s/2), s its channel's step at
b bits, zeros kept) is estimated from --pairs antithetic pairs, (f(θ + v) + f(θ − v))/2 − f(θ), which keeps the
second-order term ½ Σ σ_i² ∂²f/∂θ_i² and cancels the first. The predicted agreement (`survival_probability` with the
linearised σ, as `Roundoff.agreement`) is then computed around the shifted logits and set beside the plain prediction
and the measured agreement. This is an experiment, not a method of condbook: it costs 2 × pairs forward passes per width.
Writes shift-check.csv.
"""
import argparse, math, sys, time
from pathlib import Path
import pandas as pd, torch
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from condbook.data import default_data  # $CONDBOOK_DATA, else ../shared/data/imagenet-sample
from condbook.bitwidth import Fixed, Widths, rounded_weights, rounding_step, survival_probability
from condbook.core import full_precision
from margin_check import deployed_analysis  # the same network, photos and calibration

def agreement(logits, top, tau):
    "Mean predicted survival of the top-1 class `top` [B, 1] with independent noise `tau` [B] on every logit."
    return survival_probability((logits.gather(1, top) - logits).scatter(1, top, math.inf), tau).mean().item()

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=96, help='evaluation photos')
    p.add_argument('--pairs', type=int, default=4, help='antithetic noise pairs per width')
    p.add_argument('--data', default=default_data())
    p.add_argument('--out', default=str(ROOT/'report'/'bitwidth'/'margin-check'))
    a = p.parse_args(argv)
    t0, g = time.time(), torch.Generator().manual_seed(0)
    ro = deployed_analysis(a.data, a.n)
    est = ro.est
    l0 = ro.logits.double()
    top = l0.argmax(1, keepdim=True)
    tensors = [(name, r.module.get_parameter(p)) for name, r in ro.rounded.items() for p in r.names]
    rows = []
    for b in range(4, 9):
        fmt = Widths(Fixed(b, True), None)
        tau = ro.margin_sigma(fmt, 'weights').double() / math.sqrt(2)
        with torch.no_grad(), full_precision():
            with rounded_weights(ro.rounded, fmt.weights, ro.folds, biases=False): y = est.gm(ro.x).double()
            steps = []  # per weight tensor: the rounding step of each entry (the folded weight's step per channel, divided by k)
            for name, t in tensors:
                k = ro.folds.get(name)
                k = torch.ones(len(t), dtype=t.dtype) if k is None else k.to(t.dtype)
                k = k.reshape(-1, *[1] * (t.dim() - 1))
                steps.append(rounding_step(t.detach() * k, fmt.weights) / k.abs())
            shift = torch.zeros_like(l0)
            for _ in range(a.pairs):
                vs = [(torch.rand(t.shape, generator=g, dtype=t.dtype) - 0.5) * s for (_, t), s in zip(tensors, steps)]
                for sign in (1, -1):
                    saved = [t.data for _, t in tensors]
                    for (_, t), v in zip(tensors, vs): t.data = t.data + sign * v
                    shift += (est.gm(ro.x).double() - l0) / (2 * a.pairs)
                    for (_, t), d in zip(tensors, saved): t.data = d
        rows.append(dict(bits=b, measured=100 * (y.argmax(1) == top[:, 0]).double().mean().item(), predicted=100 * agreement(l0, top, tau),
                         predicted_with_shift=100 * agreement(l0 + shift, top, tau)))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows).round(2)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    df.to_csv(Path(a.out)/'shift-check.csv', index=False)
    print(df.to_string(index=False), f'\n{a.n} photos, {a.pairs} pairs, {time.time() - t0:.0f} s', flush=True)

if __name__ == '__main__': main()
