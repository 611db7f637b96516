"""Bound propagation side by side: condbook.crown (CROWN, α-CROWN), auto_LiRPA 0.3 (CROWN, α-CROWN) and condbook.certify's
region walk, on small CNNs trained on scikit-learn's 8×8 handwritten digits; certified ℓ2 radius and seconds per image, with the
smallest flip condbook's DDN finds as the upper end. Not part of CI: auto_LiRPA is not a dependency of condbook. auto_LiRPA 0.3
(the only release on PyPI) needs appdirs and three shims to import on torch 2.14 and numpy 2 (`import_lirpa`):

    .venv/bin/python -m pip install --no-deps --target /tmp/lirpa auto_LiRPA==0.3 appdirs==1.4.4
    .venv/bin/python -m pip download --no-deps --only-binary=:all: scikit-learn -d /tmp/skw
    OMP_NUM_THREADS=1 .venv/bin/python studies/certify/crown_compare.py --lirpa /tmp/lirpa --wheel /tmp/skw/scikit_learn-*.whl

Writes per_image.csv and summary.md into --out (default studies/certify/crown-compare)."""
import argparse, copy, math, sys, time, types, warnings
from pathlib import Path
import numpy as np, pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from ties import digits   # noqa: E402  (the data set, read out of scikit-learn's wheel)


def import_lirpa(path):
    "auto_LiRPA 0.3 from `path`, with the shims it needs on numpy 2 and torch 2.14 (module paths that moved or went)."
    sys.path.insert(0, path)
    sys.modules.setdefault('numpy.lib.arraysetops', types.SimpleNamespace(isin=np.isin))
    import torch.onnx.symbolic_helper as sh
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    sh._set_opset_version = lambda v: setattr(GLOBALS, 'export_onnx_opset_version', v)
    torch._C.Node.__getitem__ = lambda self, k: getattr(self, self.kindOf(k))(k)
    import logging
    import auto_LiRPA
    from auto_LiRPA.perturbations import PerturbationLpNorm
    logging.getLogger('auto_LiRPA').setLevel(logging.CRITICAL)
    return auto_LiRPA, PerturbationLpNorm


def networks():
    "name -> a fresh network for 1×8×8 digits (seeded by the caller)."
    relu_cnn = lambda act: nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), act(), nn.Conv2d(16, 32, 3, stride=2, padding=1), act(),
                                         nn.Flatten(), nn.Linear(32 * 16, 10))
    return {'conv-conv-linear, ReLU': lambda: relu_cnn(nn.ReLU),
            'deeper, max pool 2x2': lambda: nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10)),
            'max pool 3x3 stride 2 (overlapping)': lambda: nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2), nn.Conv2d(16, 32, 3, padding=1),
                nn.ReLU(), nn.Flatten(), nn.Linear(32 * 3 * 3, 10)),
            'conv-conv-linear, ReLU6': lambda: relu_cnn(nn.ReLU6)}


def train(net, X, y, train_idx, epochs, seed):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(epochs):
        for b in torch.randperm(len(train_idx), generator=g).split(64):
            opt.zero_grad(); F.cross_entropy(net(X[train_idx[b]]), y[train_idx[b]]).backward(); opt.step()
    return net.double().eval()


def largest(ok, start, steps):
    "Bisection as in issue 37's comparison: double or halve from `start` to a bracket, then `steps` halvings; the largest r with ok(r)."
    lo, hi, r = 0., math.inf, start
    for _ in range(60):
        if lo > 0 and hi < math.inf: break
        if ok(r): lo, r = r, 2 * r
        else: hi, r = r, r / 2
    for _ in range(steps if lo > 0 else 0):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def lirpa_radius(lirpa, Pert, net, x, C, method, steps):
    """(radius, seconds, dtype) of auto_LiRPA's `method` by bisection, in float64, else float32 (its max pooling fails in
    float64); (nan, nan, why) if it refuses the network."""
    why = ''
    for dtype in (torch.float64, torch.float32):
        n, xd, Cd = copy.deepcopy(net).to(dtype), x.to(dtype), C.to(dtype)
        try:
            bm = lirpa[0].BoundedModule(n, torch.zeros_like(xd), device='cpu')
            def ok(r):
                lb, _ = bm.compute_bounds(x=(lirpa[0].BoundedTensor(xd, Pert(norm=2, eps=r)),), C=Cd[None], method=method,
                                          bound_upper=False)
                return bool((lb > 0).all())
            t = time.time()
            r = largest(ok, 0.1 * max(x.norm().item(), 1.) / math.sqrt(x.numel()), steps)
            return r, time.time() - t, str(dtype).split('.')[-1]
        except Exception as e: why = f'{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ""}'
    return math.nan, math.nan, f'refused ({why})'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--lirpa', required=True, help='folder auto_LiRPA 0.3 is installed in (pip --target)')
    p.add_argument('--wheel', required=True, help="scikit-learn's wheel (pip download)")
    p.add_argument('--images', type=int, default=30)
    p.add_argument('--alpha-images', type=int, default=10, help="images on which auto_LiRPA's α-CROWN runs too (slow)")
    p.add_argument('--epochs', type=int, default=20)
    p.add_argument('--steps', type=int, default=14, help="auto_LiRPA's bisection halvings after the bracket")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--networks', default='', help='comma-separated substrings: only the networks whose name holds one')
    p.add_argument('--out', default=str(ROOT / 'studies' / 'certify' / 'crown-compare'))
    a = p.parse_args()
    warnings.filterwarnings('ignore')
    from condbook.attacks import flip_radius
    from condbook.certify import certify
    from condbook.crown import Crown
    lirpa = import_lirpa(a.lirpa)
    X, y = digits(a.wheel)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(a.seed))
    train_idx, test_idx = perm[:1500], perm[1500:]
    rows, lines = [], []
    for name, make in networks().items():
        if a.networks and not any(k in name for k in a.networks.split(',')): continue
        torch.manual_seed(a.seed)
        net = train(make(), X, y, train_idx, a.epochs, a.seed)
        with torch.no_grad(): acc = (net(X[test_idx].double()).argmax(1) == y[test_idx]).double().mean().item()
        x = X[test_idx[:a.images]].double()
        cr = Crown(net, (1, 8, 8))
        t = time.time()
        per, _ = certify(net, x, curve=False, patterns=0)
        region_secs = (time.time() - t) / len(x)
        flips = flip_radius(net, x, 'ddn', ddn_steps=200).numpy()
        with torch.no_grad(): correct = (net(x).argmax(1) == y[test_idx[:a.images]]).numpy()
        for b in range(len(x)):
            xb = x[b:b + 1]
            r0, _, s0 = cr.radius(xb)
            _, ra, sa = cr.radius(xb, alpha=20)
            _, C = cr.spec(xb)
            lc, lcs, ld = lirpa_radius(lirpa, lirpa[1], net, xb, C, 'CROWN', a.steps)
            la, las, _ = (lirpa_radius(lirpa, lirpa[1], net, xb, C, 'alpha-CROWN', a.steps) if b < a.alpha_images
                          else (math.nan, math.nan, ''))
            rows.append(dict(network=name, accuracy=acc, image=b, correct=bool(correct[b]), margin=per.margin[b],
                             crown=r0, crown_s=s0, alpha_crown=ra, alpha_crown_s=sa, lirpa_crown=lc, lirpa_crown_s=lcs,
                             lirpa_alpha=la, lirpa_alpha_s=las, lirpa_dtype=ld, region=per.radius[b], region_s=region_secs, ddn_flip=flips[b]))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / 'per_image.csv', index=False)
    (out / 'summary.md').write_text(summary(df))
    print(summary(df))


def summary(df)->str:
    "One Markdown table: per network, radii ratios and seconds per image."
    med = lambda s: f'{s.median():.3g} ({s.min():.3g}–{s.max():.3g})' if s.notna().any() else '–'
    sec = lambda s: f'{s.median():.2f}' if pd.api.types.is_numeric_dtype(s) and s.notna().any() else '–'
    lines = ['| network (acc.) | images | CROWN: ours / auto_LiRPA | α-CROWN: ours / auto_LiRPA | best of ours / region walk '
             '| radius > 0 | ≤ DDN flip | s/image: ours CROWN, ours α, auto_LiRPA CROWN, auto_LiRPA α, region walk |',
             '|---|---|---|---|---|---|---|---|']
    for name, g in df.groupby('network', sort=False):
        lc = pd.to_numeric(g.lirpa_crown, errors='coerce')
        la = pd.to_numeric(g.lirpa_alpha, errors='coerce')
        best = g[['crown', 'alpha_crown', 'region']].max(axis=1)
        sound = (g[['crown', 'alpha_crown', 'region']].max(axis=1) <= g.ddn_flip).sum()
        lcs = pd.to_numeric(g.lirpa_crown_s, errors='coerce')
        las = pd.to_numeric(g.lirpa_alpha_s, errors='coerce')
        lines.append(f'| {name} ({g.accuracy.iloc[0]:.3f}) | {len(g)} | {med(g.crown / lc) if lc.notna().any() else "auto_LiRPA refuses"} '
                     f'| {med(g.alpha_crown / la) if la.notna().any() else "–"} | {med(g[["crown", "alpha_crown"]].max(axis=1) / g.region)} '
                     f'| {(best > 0).sum()}/{len(g)} | {sound}/{len(g)} '
                     f'| {sec(g.crown_s)}, {sec(g.alpha_crown_s)}, {sec(lcs)}, {sec(las)}, {sec(g.region_s)} |')
    return '\n'.join(lines) + '\n'


if __name__ == '__main__': main()
