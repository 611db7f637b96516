"""condbook.crown against answers computed independently: sampling inside the ball (every bounded node and every margin),
the exact flip distance of 2-D ReLU networks (rays and bisection), the smallest flip condbook's DDN finds, and refusals."""
import math
import pytest, torch
import torch.nn.functional as F
from torch import nn
from condbook.certify import certified_radius
from condbook.crown import Crown, crown_radius
from condbook.estimator import UnsupportedOperationError, record


def ball(x, r, n, p=2, seed=0):
    "n points of the ℓp ball of radius r around x [1, ...], half on its boundary (ℓ∞: at corners)."
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, *x.shape[1:], dtype=torch.float64, generator=g)
    shape = (-1, *[1] * (x.dim() - 1))
    if p == 2:
        d = d / d.flatten(1).norm(dim=1).view(shape)
        s = torch.rand(n, generator=g, dtype=torch.float64) ** (1 / x[0].numel())
        s[: n // 2] = 1
        return x + r * s.view(shape) * d
    d = torch.rand(n, *x.shape[1:], dtype=torch.float64, generator=g) * 2 - 1
    d[: n // 2] = d[: n // 2].sign()
    return x + r * d


class Skip(nn.Module):
    "conv → ReLU → conv → BatchNorm → ReLU6, added to its input → non-overlapping max pool → linear → LeakyReLU → linear."
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc1, self.fc2 = nn.Linear(36, 12), nn.Linear(12, 5)
        with torch.no_grad(): self.bn.running_mean.uniform_(-.5, .5); self.bn.running_var.uniform_(.5, 2); self.c2.weight.mul_(4)
    def forward(self, x):
        h = F.relu(self.c1(x))
        h = h + F.relu6(self.bn(self.c2(h)))
        return self.fc2(F.leaky_relu(self.fc1(F.max_pool2d(h, 2).flatten(1)), 0.1))


def small_cnn(seed):
    "conv → ReLU → overlapping max pool (3×3, stride 2, padding 1) → conv → Hardtanh → linear."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(6, 6, 3),
                         nn.Hardtanh(-.5, 1.), nn.Flatten(), nn.Linear(6 * 4, 5)).eval()


@pytest.mark.parametrize('p', [2, math.inf])
@pytest.mark.parametrize('which', ['skip', 'cnn'])
def test_bounds_hold_on_the_ball(p, which):
    "Every node a relaxation reads stays inside its bounds and every margin above its lower bound at 3 000 points of the ball, at radii below, at and above the certified one."
    torch.manual_seed(5)
    net = Skip().eval() if which == 'skip' else small_cnn(6)
    x = torch.rand(1, 1, 6 if which == 'skip' else 8, 6 if which == 'skip' else 8, dtype=torch.float64)
    cr = Crown(net, x.shape[1:], p=p)
    r0, ra, _ = cr.radius(x, alpha=10)
    assert 0 < r0 <= ra
    _, C = cr.spec(x)
    for r in (r0 / 3, r0, ra, 4 * ra):
        b = cr.bounds(x, r)
        for alpha in (0, 10):
            m, reach = cr.margins(x, r, b, alpha=alpha)
            vals = record(cr.gm, ball(x, r, 3000, p))
            for s, (l, u) in b.items(): assert (vals[s] >= l).all() and (vals[s] <= u).all(), (s, r)
            assert (vals[cr.output] @ C.T >= m).all(), (r, alpha)
            if (m > 0).all(): assert reach >= r


def mlp(seed, widths=(2, 12, 12, 3)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]): layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def exact_flip(net, x, reach, angles=1440, steps=600):
    "Smallest radius along `angles` rays from x (2-D) where the class changes: a grid to `reach`, then bisection (inf if none)."
    t = torch.linspace(0, 2 * math.pi, angles + 1, dtype=torch.float64)[:-1]
    u, y = torch.stack([t.cos(), t.sin()], 1), net(x).argmax()
    rs = torch.linspace(0, reach, steps + 1, dtype=torch.float64)[1:]
    with torch.no_grad(): moved = torch.stack([net(x + r * u).argmax(1) != y for r in rs], 1)
    hit = moved.any(1)
    if not hit.any(): return math.inf
    k = moved.float().argmax(1)
    lo, hi = torch.where(k > 0, rs[(k - 1).clamp_min(0)], 0.), rs[k]
    for _ in range(40):
        mid = (lo + hi) / 2
        with torch.no_grad(): ch = net(x + mid[:, None] * u).argmax(1) != y
        lo, hi = torch.where(ch, lo, mid), torch.where(ch, mid, hi)
    return hi[hit].min().item()


def test_two_dimensional_exact_flip():
    "2-D ReLU networks: CROWN ≤ α-CROWN ≤ the exact flip distance (1 440 rays) on 8 networks; the ℓ∞ radius ≤ the ℓ2 one ≤ √2 × it."
    ratios = []
    for seed in range(8):
        net, x = mlp(seed), torch.rand(1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        r0, ra, _ = Crown(net, (2,)).radius(x, alpha=20)
        flip = exact_flip(net, x, 200 * ra)
        assert 0 < r0 <= ra <= flip * (1 + 1e-9), (seed, r0, ra, flip)
        rinf, _, _ = Crown(net, (2,), p=math.inf).radius(x)
        assert rinf <= r0 * (1 + 1e-3) and r0 <= math.sqrt(2) * rinf * (1 + 1e-3)   # B∞(r/√2) ⊂ B2(r) ⊂ B∞(r)
        ratios.append(flip / ra)
    assert sorted(ratios)[len(ratios) // 2] < 4, ratios                             # not vacuous


def test_radius_below_ddn_flips_and_against_certify():
    "On 6 images of a random CNN with overlapping max pooling: bound propagation's radius ≤ DDN's smallest flip; certified_radius keeps the largest method."
    from condbook.attacks import flip_radius
    net = small_cnn(2).double()
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    radii = certified_radius(net, x, alpha=10, grid=8)
    alone = crown_radius(net, x, alpha=10)
    flips = flip_radius(net, x, 'ddn').numpy()
    assert (radii.crown <= radii.alpha_crown).all() and (radii.crown > 0).all()
    assert (radii.radius >= alone[['crown', 'alpha_crown']].max(axis=1)).all()
    assert (radii.radius <= flips).all(), (radii.radius.values, flips)
    assert (radii.radius == radii[['region', 'crown', 'alpha_crown']].max(axis=1)).all() and radii.skipped[0] == ''
    assert set(radii.method) <= {'region walk', 'tracking', 'layer walk', 'CROWN', 'α-CROWN'}


def test_refusals_and_skips():
    "An operation without a relaxation is refused by name; certified_radius then certifies with what can run and says what it skipped."
    gelu = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 3)).eval()
    with pytest.raises(UnsupportedOperationError, match='gelu has no linear relaxation'): Crown(gelu, (1, 2, 2))
    x = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    out = certified_radius(gelu, x)
    assert (out.radius == 0).all() and (out.method == 'none').all() and 'bound propagation' in out.skipped[0]
    assert 'region walk' in out.skipped[0] and out.region.isna().all()
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double().eval()
    affine = crown_radius(lin, x, alpha=0)                 # affine: exactly the distance to the nearest decision plane
    W, logits = lin[1].weight, lin(x)
    y = logits.argmax(1)
    exact = [min((logits[b, y[b]] - logits[b, j]) / (W[y[b]] - W[j]).norm() for j in range(3) if j != y[b]).item() for b in range(2)]
    assert affine.alpha_crown.isna().all()
    torch.testing.assert_close(torch.tensor(affine.crown.values), torch.tensor(exact, dtype=torch.float64), rtol=2e-4, atol=0)
    assert (affine.crown.values <= exact).all()
