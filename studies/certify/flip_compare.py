"""How tight is condbook's flip radius? condbook's DDN (`condbook.attacks.ddn`), its L2 PGD bisection and Carlini–Wagner
against foolbox's DDN, FMN and DeepFool (the best of the three per image) on the same images; every flip verified by a forward
pass. Not part of CI: foolbox is not a dependency of condbook. Install it beside the environment, without touching torch:

    .venv/bin/python -m pip install --no-deps --target /tmp/fb foolbox==3.3.4 eagerpy==0.30.0
    OMP_NUM_THREADS=1 .venv/bin/python studies/certify/flip_compare.py --foolbox /tmp/fb

Writes per_image.csv and summary.md into --out (default studies/certify/flip-compare)."""
import argparse, json, math, sys, time, types
from pathlib import Path
import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]


def small_cnn(seed=0):
    "A random ReLU CNN with overlapping max pooling (3×3, stride 2) on 32×32 crops, 10 classes."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10)).eval()


def networks(names):
    "(name, model, crop size, limit on the photos, whether Carlini–Wagner runs) for each name asked for."
    from condbook.models import load_model
    for n in names:
        if n == 'cnn': yield n, small_cnn(), 32, None, True
        elif n == 'alexnet': yield 'alexnet-untrained-64', load_model('alexnet', 'untrained'), 64, None, True
        elif n == 'efficientnet': yield 'efficientnet_lite0-imagenet-224', load_model('efficientnet_lite0', 'imagenet'), 224, 4, False
        else: raise SystemExit(f'unknown network {n!r}')


def foolbox_flips(fb, model, x, top, steps):
    "{attack: (distances [B] (inf where no verified flip), seconds)} for foolbox's minimal-norm ℓ2 attacks."
    fmodel, crit, out = fb.PyTorchModel(model, bounds=(0, 1)), fb.criteria.Misclassification(top), {}
    attacks = {'foolbox DDN': fb.attacks.DDNAttack(steps=steps), 'foolbox FMN': fb.attacks.L2FMNAttack(steps=steps),
               'foolbox DeepFool': fb.attacks.L2DeepFoolAttack(steps=50, candidates=10)}
    for name, attack in attacks.items():
        t = time.time()
        _, adv, _ = attack(fmodel, x, crit, epsilons=None)
        with torch.no_grad(): flipped = model(adv).argmax(1) != top
        d = (adv - x).flatten(1).norm(dim=1).double()
        out[name] = (torch.where(flipped, d, math.inf), time.time() - t)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--foolbox', default='/tmp/fb', help='folder foolbox and eagerpy were installed into (pip --target)')
    p.add_argument('--networks', nargs='+', default=['cnn', 'alexnet', 'efficientnet'])
    p.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data' / 'imagenet-sample'))
    p.add_argument('--limit', type=int, default=16, help='photos per network (EfficientNet-Lite0: at most 4)')
    p.add_argument('--steps', type=int, default=100, help='iterations of every DDN and FMN')
    p.add_argument('--out', default=str(ROOT / 'studies' / 'certify' / 'flip-compare'))
    a = p.parse_args()
    sys.path.insert(0, a.foolbox)
    sys.modules.setdefault('git', types.SimpleNamespace(Repo=None))   # foolbox's model zoo imports GitPython; unused here
    import foolbox as fb
    from condbook.attacks import flip_radius
    from condbook.data import batches, image_folder
    from condbook.models import pixel_transform
    torch.set_grad_enabled(True)
    rows, out = [], Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, model, size, cap, cw in networks(a.networks):
        model.requires_grad_(False)
        n = min(a.limit, cap or a.limit)
        x, _, _ = next(batches(image_folder(a.data, limit=n), pixel_transform(crop=size), batch_size=n))
        with torch.no_grad(): top = model(x).argmax(1)
        found, t = {}, time.time()
        found['condbook DDN'] = (flip_radius(model, x, 'ddn', ddn_steps=a.steps), time.time() - t)
        t = time.time()
        found['condbook L2 PGD'] = (flip_radius(model, x, 'l2_pgd', eps_max=8., steps=8, ddn_steps=0), time.time() - t)
        if cw:
            t = time.time()
            found['condbook CW'] = (flip_radius(model, x, 'cw_l2', ddn_steps=0), time.time() - t)
        found.update(foolbox_flips(fb, model, x, top, a.steps))
        for i in range(len(x)):
            rows.append(dict(network=name, image=i, **{k: v[0][i].item() for k, v in found.items()}))
        secs = {k: round(v[1], 1) for k, v in found.items()}
        print(name, len(x), 'photos; seconds per attack', json.dumps(secs), flush=True)
        rows[-1]['seconds'] = json.dumps(secs)
    df = pd.DataFrame(rows)
    df.to_csv(out / 'per_image.csv', index=False)
    fbcols = ['foolbox DDN', 'foolbox FMN', 'foolbox DeepFool']
    df['best foolbox'] = df[fbcols].min(1)
    lines = ['| network | photos | condbook DDN / best foolbox: median (min–max) | within 5% | DDN ≤ best foolbox | '
             'L2 PGD / best foolbox, median | CW / best foolbox, median | best foolbox attack (count) |', '|---|---|---|---|---|---|---|---|']
    for name, g in df.groupby('network', sort=False):
        r = g['condbook DDN'] / g['best foolbox']
        pgd = (g['condbook L2 PGD'] / g['best foolbox']).median()
        cw = (g['condbook CW'] / g['best foolbox']).median() if 'condbook CW' in g and g['condbook CW'].notna().any() else math.nan
        winner = g[fbcols].idxmin(1).value_counts().to_dict()
        lines.append(f'| {name} | {len(g)} | {r.median():.4f} ({r.min():.4f}–{r.max():.4f}) | {(r <= 1.05).sum()}/{len(g)} | '
                     f'{(r <= 1).sum()}/{len(g)} | {pgd:.3f} | {cw:.3f} | {winner} |')
    (out / 'summary.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__': main()
