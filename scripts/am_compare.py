#!/usr/bin/env python
"""Avant & Morgansen's local Lipschitz bound next to `condbook.certify`, on the same AlexNet, photos and radii.

T. Avant and K. A. Morgansen, "Analytical bounds on the local Lipschitz constants of ReLU networks", IEEE TNNLS 2023;
code: https://github.com/uwaa-ndcl/local_lipschitz. Their code is NOT part of condbook (licence, provenance): this script
imports it from the checkout named by --am-repo and copies nothing from it.

    git clone https://github.com/uwaa-ndcl/local_lipschitz /tmp/local_lipschitz
    OMP_NUM_THREADS=1 python scripts/am_compare.py --am-repo /tmp/local_lipschitz

What is compared, per photo and radius r (L2 balls B(x, r)):
- A&M: `network_bound.local_bound(net, x, r)`, their bound on sup_{x' ∈ B(x, r)} ‖f(x') − f(x)‖/‖x' − x‖ (the product of
  their per-layer affine-ReLU bounds ‖R A D‖, max pooling √(ceil(k/s)²), ...). Their power iteration (100 steps, random
  start) estimates each ‖R A D‖ from below, so strictly their product is not a guaranteed upper bound; the start is seeded
  here (torch.manual_seed(0) before each call) for reproducibility.
- condbook: `Certifier.certify_image` (the `condbook.certify` machinery): U(r) = the certified ‖J(x)‖ bound for r ≤ r_lin;
  beyond r_lin the smallest of the tracked U(r) (as far as tracking's budget, --max-exact exact gradient norms, reaches),
  the masked layer product started from tracking (at their radii and --layer-radii grid radii) and the global Lipschitz
  bound L_f (`condbook.estimator.Estimator`). Column ours_kind says which; ours_tracked_U keeps the tracked value alone
  (inf where tracking stopped).
- the attack: `Certifier.amplification` (float64 gradient ascent on the sphere ‖δ‖ = r, from the top singular vector of J),
  a lower bound on the same supremum; both ratios bound/attack use it.

The network: the untrained torchvision AlexNet of condbook (`load_model('alexnet', 'untrained', seed=0)`, as the
experiments build it). Photos: the first --n-images of the folder in the certify study's seeded order
(`random.Random(seed).shuffle`), preprocessed by condbook (`model.transform`: resize 256 bilinear, centre crop 224, [0, 1]).

Space and norm (the conversion): condbook's `Classifier` is normalisation ∘ network and takes pixels in [0, 1];
A&M work after normalisation ((x − mean)/std), where their radii (linspace(0.001, 3, 30) for AlexNet in
calculate_bounds.py / networks/alexnet.py) are defined. Both methods here run on the bare network `model.net` at the
normalised photo, so every radius, bound and ratio below is in the normalised input space, L2, for both. A pixel-space
ball of radius ρ maps into the normalised ball of radius ρ/min(std) = ρ/0.224 and contains the normalised ball of radius
ρ/max(std) = ρ/0.229; a pixel-space Lipschitz constant is at most the normalised one divided by 0.224.

Their AlexNet description (networks/alexnet.py) is not imported: importing it loads pretrained weights from the network and
data/imagenet/toucan.png, which the repository does not ship. The same `net.layers` list it builds (features, avgpool,
Flatten, classifier) is built here from OUR weights, with ReLU(inplace=False) (identical values).

Patches (applied at run time, in this process only; their files are untouched):
1. `torchattacks` (imported at the top of their utils.py, used only by attacks not run here) is replaced by an empty module
   when it is not installed.
2. `utils.get_aiTD` for nn.Conv2d, the row norms ‖a_iᵀ D‖ of the convolution matrix restricted to the inputs D keeps, is
   replaced by an exact equivalent: ‖a_iᵀ D‖² = conv2d(d, W²) (the squared kernel applied to the 0/1 mask of kept inputs,
   zero padding = inputs outside the image contribute nothing). Theirs builds every row by a transposed convolution of a
   basis vector (~1e14 flops per radius at 224×224: hours on a CPU). The script checks the equivalence against their own
   function on every AlexNet convolution at 64×64 with random masks before it runs (printed; it stops if they differ).
   No change was needed for torch 2.x APIs.
3. their my_config.device / utils.device are set to --device.

Outputs (--out): compare.csv (per photo and radius: A&M bound, ours U (and its kind), ours tracked U alone, attack, both
ratios), per_image.csv (r_lin, how far tracking reached, ‖J‖ bounds, both global bounds, seconds), summary.csv (medians over
the photos per radius point). With the defaults (3 photos, 6 of their 30 radii, condbook's grid of 24 radii, A&M also at
every 6th grid point) it took ~16 min on one shared CPU core (A&M ~7-16 s per radius, condbook ~3.5-4 min per photo).
Committed: report/certify/am-compare (the defaults) and report/certify/am-compare/max-exact-4096 (one photo,
--n-images 1 --max-exact 4096 --am-radii 0 --am-grid-every 0: how much further a larger tracking budget reaches) and
report/certify/am-compare/max-exact-16384 (one photo at their radius 0.001 alone: --n-images 1 --max-exact 16384 --grid 0
--am-radii 0; ~5 min).
"""
import argparse, copy, importlib.util, math, os, random, sys, time, types
from pathlib import Path
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's condbook
from condbook.data import default_data  # $CONDBOOK_DATA, else ../shared/data/imagenet-sample
from condbook.certify import Certifier
from condbook.core import full_precision, save_csv
from condbook.data import image_folder
from condbook.estimator import Estimator
from condbook.models import IMAGENET_MEAN, IMAGENET_STD, load_model

KINDS = {'jacobian': '‖J‖ bound (r ≤ r_lin)', 'tracked': 'tracked', 'layers': 'masked layer product', 'global': 'global L_f', 'none': 'none'}
AM_RADII = np.linspace(0.001, 3, 30)   # their AlexNet grid: eps_min, eps_max of networks/alexnet.py, n_bound of calculate_bounds.py


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--am-repo', required=True, help='checkout of github.com/uwaa-ndcl/local_lipschitz (imported, not copied)')
    p.add_argument('--data', default=default_data(), help='folder of photos')
    p.add_argument('--n-images', type=int, default=3, help='photos, in the certify study\'s seeded order')
    p.add_argument('--seed', type=int, default=0, help='order of the photos (as scripts/certify_study.py)')
    p.add_argument('--am-radii', type=int, nargs='*', default=[0, 1, 3, 7, 14, 29],
                   help='indices into their grid linspace(0.001, 3, 30) (default: 6 of the 30, ~12 s each on one CPU core)')
    p.add_argument('--layer-radii', type=int, default=8, help="grid radii past r_lin where condbook's masked layer product is evaluated, besides their radii")
    p.add_argument('--grid', type=int, default=24, help='condbook\'s U(r) also at r_lin·2^(k/2), k < grid (how far tracking reaches)')
    p.add_argument('--am-grid-every', type=int, default=6, help='A&M also at the grid points with k a multiple of this (0: none)')
    p.add_argument('--max-exact', type=int, default=512, help='condbook: exact gradient norms per image and search')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default='report/certify/am-compare', help='output folder (compare.csv, per_image.csv)')
    return p.parse_args(argv)


def import_am(repo, device):
    "Their modules `utils` and `network_bound`, imported from `repo`, with the run-time patches of the docstring."
    repo = Path(repo).resolve()
    if not (repo/'network_bound.py').is_file(): sys.exit(f'--am-repo {repo}: no network_bound.py there (a local_lipschitz checkout?)')
    sys.path.insert(0, str(repo))
    if importlib.util.find_spec('torchattacks') is None: sys.modules['torchattacks'] = types.ModuleType('torchattacks')
    import my_config, utils, network_bound
    my_config.device = utils.device = device
    utils.get_aiTD_original = getattr(utils, 'get_aiTD_original', utils.get_aiTD)
    utils.get_aiTD = row_norms(utils.get_aiTD_original)
    return utils, network_bound


def row_norms(original):
    "`get_aiTD` with the Conv2d case computed as sqrt(conv2d(mask, W²)) (exact, see the docstring); other cases: `original`."
    def get_aiTD(func, input_shape, output_shape, pos_input=False, d=None, batch_size=2500):
        if not isinstance(func, nn.Conv2d) or pos_input or func.padding_mode != 'zeros':
            return original(func, input_shape, output_shape, pos_input=pos_input, d=d, batch_size=batch_size)
        w = func.weight.detach()
        mask = torch.ones(input_shape[1:], dtype=w.dtype, device=w.device) if d is None else d.reshape(input_shape[1:]).to(w)
        sq = F.conv2d(mask[None], w ** 2, None, func.stride, func.padding, func.dilation, func.groups)
        return sq.flatten().clamp_min(0).sqrt()
    return get_aiTD


def check_row_norms(utils, net, size=64, seed=0):
    "Largest relative difference between their get_aiTD and ours on every convolution of `net` at size×size, with and without a random mask."
    g = torch.Generator().manual_seed(seed)
    x, worst = torch.zeros(1, 3, size, size), 0.
    with torch.no_grad():
        for m in net.features:
            y = m(x)
            if isinstance(m, nn.Conv2d):
                for d in (None, torch.rand(x.numel(), generator=g) < .5):
                    a = utils.get_aiTD_original(m, x.shape, y.shape, d=d, batch_size=2000)
                    b = utils.get_aiTD(m, x.shape, y.shape, d=d)
                    worst = max(worst, ((a - b).abs().max() / a.abs().max()).item())
            x = y
    return worst


def am_network(net):
    "A copy of the torchvision AlexNet `net` with the `layers` list their networks/alexnet.py builds (features, avgpool, Flatten, classifier)."
    net = copy.deepcopy(net).float().eval()
    for mod in net.modules():
        if isinstance(mod, nn.ReLU): mod.inplace = False
    net.layers = list(net.features) + [net.avgpool, nn.Flatten()] + list(net.classifier)
    return net


def am_bound(network_bound, net, x, r):
    "(their local bound at radius r, seconds); their power iteration's random start seeded."
    torch.manual_seed(0)
    t = time.time()
    with torch.no_grad(): b = network_bound.local_bound(net, x, float(r), batch_size=2000)
    return float(b), time.time() - t


def photos(data, n, seed):
    "(paths, labels) of the first `n` photos in the certify study's seeded order."
    images = image_folder(data)
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    return images, order[:n]


def summary(df):
    "Median over photos, per radius point, of both bounds, the attack and the two ratios."
    g = df.groupby(['point'], sort=False)
    return g.agg(radius=('radius', 'median'), am_bound=('am_bound', 'median'), ours_U=('ours_U', 'median'), attack=('attack', 'median'),
                 am_over_attack=('am_over_attack', 'median'), ours_over_attack=('ours_over_attack', 'median'),
                 ours_kind=('ours_kind', lambda s: '/'.join(sorted(set(s)))), photos=('file', 'count')).reset_index().sort_values('radius', kind='stable')


def main(argv=None):
    a = parse(argv)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads())))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    utils, network_bound = import_am(a.am_repo, a.device)
    model = load_model('alexnet', 'untrained', device=a.device, seed=0)
    net = model.net                                                  # the network after normalisation: both methods run on it
    anet = am_network(net).to(a.device)
    t = time.time()
    worst = check_row_norms(utils, am_network(net).cpu())
    print(f'their get_aiTD vs the conv2d(mask, W²) form on AlexNet at 64×64: largest relative difference {worst:.1e} ({time.time() - t:.0f}s)', flush=True)
    if worst > 1e-4: sys.exit('the row-norm replacement differs from their get_aiTD: stop')
    shape = (3, 224, 224)
    lo = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)); hi = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    radii_am = AM_RADII if a.am_radii is None else AM_RADII[a.am_radii]
    images, idx = photos(a.data, a.n_images, a.seed)
    rows, per = [], []
    with full_precision():
        t = time.time()
        L_f = Estimator(net, shape, input_box=(lo, hi)).lipschitz      # certified global bound, normalised space
        print(f'condbook global L_f = {L_f:.4g} ({time.time() - t:.0f}s)', flush=True)
        cert = Certifier(net, shape, steps=32, groups=4, chunk=32, max_exact=a.max_exact)
        for i in idx:
            name = images.paths[i].name
            x = model.normalize(images.load(i, model.transform)[None].to(a.device))       # condbook's preprocessing, then normalised
            with torch.no_grad():
                X = x
                for f in anet.layers: X = f(X)
                err = (X - anet(x)).norm().item()
            t = time.time()
            row, curve = cert.certify_image(x.double(), radii=list(radii_am), grid=a.grid, lipschitz=L_f, patterns=0, layer_radii=a.layer_radii)
            t_ours = time.time() - t
            am_glob = float(np.prod(network_bound.global_bound(anet, x)))
            print(f"{name}: r_lin {row['r_lin']:.3g}, tracked to {row.get('tracked_radius', 0):.3g}, ‖J‖ ∈ [{row['jacobian_lower']:.4g}, "
                  f"{row['jacobian_upper']:.4g}], condbook {t_ours:.0f}s; A&M global {am_glob:.4g} (layer-by-layer error {err:.1e})", flush=True)
            t_am = 0.
            for c in curve:
                r = float(c['radius'])
                on_am = bool(np.isclose(r, radii_am, rtol=1e-12, atol=0).any())
                k = None if on_am else round(2 * math.log2(r / row['r_lin']))
                b, s = am_bound(network_bound, anet, x, r) if on_am or (a.am_grid_every and k % a.am_grid_every == 0) else (math.nan, 0.)
                t_am += s
                inside = r <= row['r_lin']
                kind = KINDS[c['bound']]
                rows.append(dict(file=name, label=images.labels[i], point=f'A&M eps={r:.4g}' if on_am else f'r_lin·2^({k}/2)', radius=r,
                                 am_bound=b, ours_U=c['U'], ours_kind=kind, ours_tracked_U=c['U'] if (inside or c['tracked']) else math.inf,
                                 attack=c['attack'], am_over_attack=b / c['attack'], ours_over_attack=c['U'] / c['attack'],
                                 am_seconds=s))
                print(f"  r {r:.4g}: A&M {b:.4g}  ours {c['U']:.4g} ({kind})  attack {c['attack']:.4g}  "
                      f"ratios {b / c['attack']:.3g} / {c['U'] / c['attack']:.3g}  ({s:.1f}s)", flush=True)
            per.append(dict(file=name, label=images.labels[i], r_lin=row['r_lin'], tracked_radius=row.get('tracked_radius', 0.),
                            jacobian_lower=row['jacobian_lower'], jacobian_upper=row['jacobian_upper'], ours_global_L_f=L_f,
                            am_global=am_glob, ours_seconds=t_ours, am_seconds=t_am))
            save_csv(pd.DataFrame(rows), out/'compare.csv'); save_csv(pd.DataFrame(per), out/'per_image.csv')
    df = pd.DataFrame(rows)
    s = summary(df)
    save_csv(s, out/'summary.csv')
    with pd.option_context('display.width', 200, 'display.max_rows', 200, 'display.float_format', '{:.4g}'.format):
        print(pd.DataFrame(per).to_string(index=False)); print(s.to_string(index=False))
    print(f'{len(idx)} photos, {len(df)} rows in {out}; {time.time() - t_start:.0f}s in all', flush=True)


if __name__ == '__main__': main()
