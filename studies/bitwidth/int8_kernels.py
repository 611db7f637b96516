#!/usr/bin/env python
"""condbook's emulation under the torch.ao FX presets against torch.ao's real int8 kernels (issue 38).

A small CNN (two convolution + BatchNorm + ReLU blocks, a linear head; BatchNorm statistics randomised) is quantized by
torch.ao FX with MinMax observers of the preset's grids (`prepare_fx`, calibration, `convert_fx`: fbgemm/x86 or qnnpack int8
kernels) and by condbook (`condbook.backends.spec_logits` under `fx_x86` / `fx_qnnpack`). Printed and written as JSON: the
largest logit difference, in steps of the logits' grid, and the share of the images with the same top-1 class.

    .venv/bin/python studies/bitwidth/int8_kernels.py [--out studies/bitwidth/int8_kernels.json]
"""
import argparse, copy, json, warnings
import torch
from torch import nn

warnings.filterwarnings('ignore')
from torch.ao import quantization as tq
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
from condbook.backends import PRESETS, act_levels, observe, spec_logits, weight_levels
from condbook.estimator import Estimator


def small_cnn():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16),
                        nn.ReLU(), nn.Flatten(), nn.Linear(16 * 7 * 7, 10)).eval()
    with torch.no_grad():
        for m in cnn.modules():
            if isinstance(m, nn.BatchNorm2d): m.running_var.uniform_(0.5, 2); m.weight.uniform_(0.5, 1.5); m.bias.normal_(); m.running_mean.normal_()
    return cnn


def int8_model(cnn, x_cal, spec, engine):
    "torch.ao FX's int8 model of `cnn` with observers of `spec`'s 8-bit grids (MinMax: the preset's stated observer)."
    torch.backends.quantized.engine = engine
    lo, hi = weight_levels(spec, 8)
    wq = dict(dtype=torch.qint8, quant_min=lo, quant_max=hi)
    w = tq.PerChannelMinMaxObserver.with_args(qscheme=torch.per_channel_symmetric, **wq) if spec.per_channel else \
        tq.MinMaxObserver.with_args(qscheme=torch.per_tensor_symmetric, **wq)
    act = tq.MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=spec.reduce_range)
    p = prepare_fx(copy.deepcopy(cnn), tq.QConfigMapping().set_global(tq.QConfig(activation=act, weight=w)), example_inputs=(x_cal[:1],))
    with torch.no_grad(): p(x_cal)
    return convert_fx(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='studies/bitwidth/int8_kernels.json')
    ap.add_argument('--images', type=int, default=512)
    a = ap.parse_args()
    cnn, g = small_cnn(), torch.Generator().manual_seed(1)
    x_cal, x = torch.rand(64, 3, 16, 16, generator=g), torch.rand(a.images, 3, 16, 16, generator=g)
    est, rows = Estimator(cnn, (3, 16, 16), cache=False), []
    for name, engine in (('fx_x86', 'x86'), ('fx_qnnpack', 'qnnpack')):
        if engine not in torch.backends.quantized.supported_engines: print(f'{engine}: not in this build of torch, skipped'); continue
        spec = PRESETS[name]
        with torch.no_grad(): real = int8_model(cnn, x_cal, spec, engine)(x)
        ours = spec_logits(est, x, spec, 8, observe(est, x_cal, spec))
        r = observe(est, x_cal, spec)
        qmin, qmax = act_levels(spec, 8)
        step = float((r.hi[-1].clamp(min=0) - r.lo[-1].clamp(max=0)) / (qmax - qmin))  # the logits' grid step
        off = (ours - real).abs()
        rows.append(dict(preset=name, engine=engine, images=len(x), max_difference_steps=round(off.max().item() / step, 3),
                         share_logits_equal=(off < step / 2).double().mean().item(),
                         top1_same=(ours.argmax(1) == real.argmax(1)).double().mean().item()))
        print(rows[-1])
    with open(a.out, 'w') as f: json.dump(rows, f, indent=1)


if __name__ == '__main__': main()
