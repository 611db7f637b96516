"""Ties on a real data set: a small ReLU CNN with overlapping max pooling (3×3, stride 2), trained on scikit-learn's 8×8
handwritten digits, whose zero backgrounds make max-pool windows tie at x. Before ties were tracked, every image with
r_lin = 0 got a certified radius of 0; now: condbook.certify's radius against the smallest flip condbook's DDN and L2 PGD find.

The digits ship inside scikit-learn's wheel; nothing of it is imported:

    .venv/bin/python -m pip download --no-deps --only-binary=:all: scikit-learn -d /tmp/skw
    OMP_NUM_THREADS=1 .venv/bin/python studies/certify/ties.py --wheel /tmp/skw/scikit_learn-*.whl

Writes per_image.csv and summary.md into --out (default studies/certify/ties)."""
import argparse, gzip, io, time, zipfile
from pathlib import Path
import numpy as np, pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[2]


def digits(wheel):
    "(images [N, 1, 8, 8] in [0, 1], labels [N]) from sklearn/datasets/data/digits.csv.gz inside the wheel."
    raw = zipfile.ZipFile(wheel).read('sklearn/datasets/data/digits.csv.gz')
    a = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=',')
    return torch.tensor(a[:, :64] / 16, dtype=torch.float32).view(-1, 1, 8, 8), torch.tensor(a[:, 64], dtype=torch.long)


def cnn(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(32 * 3 * 3, 10))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--wheel', required=True, help="scikit-learn's wheel (pip download)")
    p.add_argument('--images', type=int, default=30, help='test images certified')
    p.add_argument('--epochs', type=int, default=40)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=str(ROOT / 'studies' / 'certify' / 'ties'))
    a = p.parse_args()
    from condbook.attacks import flip_radius
    from condbook.certify import certify
    X, y = digits(a.wheel)
    g = torch.Generator().manual_seed(a.seed)
    perm = torch.randperm(len(X), generator=g)
    train, test = perm[:1500], perm[1500:]
    net = cnn(a.seed)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(a.epochs):
        for b in torch.randperm(len(train), generator=g).split(64):
            opt.zero_grad(); F.cross_entropy(net(X[train[b]]), y[train[b]]).backward(); opt.step()
    net = net.double().eval()
    with torch.no_grad(): acc = (net(X[test].double()).argmax(1) == y[test]).double().mean().item()
    x = X[test[:a.images]].double()
    t = time.time()
    per, _ = certify(net, x, curve=False, patterns=0)
    secs = (time.time() - t) / len(x)
    per['ddn_flip'] = flip_radius(net, x, 'ddn', ddn_steps=200).numpy()
    per['pgd_flip'] = flip_radius(net, x, 'l2_pgd', eps_max=4., steps=10, nb_iter=40, ddn_steps=0).numpy()
    with torch.no_grad(): per['correct'] = (net(x).argmax(1) == y[test[:a.images]]).numpy()
    per['flip'] = per[['ddn_flip', 'pgd_flip']].min(axis=1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state=net.state_dict(), x=x), out / 'net_and_images.pt')   # for a rerun with other code
    cols = ['image', 'correct', 'margin', 'ties', 'r_lin', 'r_untied', 'radius', 'ddn_flip', 'pgd_flip', 'seconds']
    per[cols].to_csv(out / 'per_image.csv', index=False)
    tied, pos = per.r_lin == 0, per.margin > 0
    ratio = per.flip / per.radius
    lines = [f'- test accuracy {acc:.3f} ({len(test)} images); {len(per)} test images certified, {per.correct.sum()} correct',
             f'- r_lin = 0 (ties at x) on {tied.sum()} of {len(per)} images: certified radius 0 there before ties were tracked',
             f'- certified radius > 0 on {(per.radius > 0).sum()} of {pos.sum()} images with a positive margin; '
             f'median {per.radius.median():.4g} (tied images {per.radius[tied].median():.4g})',
             f'- never above the smallest flip found (DDN 200 steps, L2 PGD 40 iterations × 11 bisection steps): '
             f'{(per.radius <= per.flip).sum()} of {len(per)}; flip / certified radius median {ratio.median():.3g} '
             f'({ratio.min():.3g}–{ratio.max():.3g}); DDN ≤ PGD on {(per.ddn_flip <= per.pgd_flip).sum()} of {len(per)}',
             f'- {secs:.2f} s per image for the certificate (CPU, one thread, float64)']
    (out / 'summary.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__': main()
