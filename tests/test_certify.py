"""condbook.certify against answers computed independently on tiny networks: the exact region radius and decision distance
(dense Jacobians of the pre-activations, read off the modules, not the certifier's graph), the exact flip distance of 2-D
networks (rays), sampling inside the certified ball, and U(r) above brute force."""
import json, math, subprocess, sys
from pathlib import Path
from PIL import Image
import pytest, torch
import torch.nn.functional as F
from torch import nn
from condbook.certify import Certifier, certify, certified_radius, linear_region_radius, lipschitz_curve, plot_curve
from condbook.estimator import UnsupportedOperationError

ROOT = Path(__file__).resolve().parents[1]


class Tiny(nn.Module):
    "conv → ReLU → 2×2 max pool → conv → ReLU6 (+ skip) → linear → ReLU → linear; `parts` returns every nonlinearity's input."
    def __init__(self, c=3, side=6, classes=4):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(c * (side // 2) ** 2, 10), nn.Linear(10, classes)
        self.relu, self.pool, self.relu6 = nn.ReLU(), nn.MaxPool2d(2), nn.ReLU6()
        with torch.no_grad(): self.conv2.weight.mul_(8); self.conv2.bias.add_(3)   # ReLU6 entries on all three pieces
    def parts(self, x):
        z1 = self.conv1(x); v = self.relu(z1); h = self.pool(v)
        z2 = self.conv2(h); g = self.relu6(z2) + h
        z3 = self.fc1(g.flatten(1))
        return dict(z1=z1, v=v, z2=z2, z3=z3), self.fc2(self.relu(z3))
    def forward(self, x): return self.parts(x)[1]


def tiny(seed, side=6):
    torch.manual_seed(seed)
    return Tiny(side=side).eval(), torch.rand(1, 1, side, side)


def sphere(shape, n=20000, seed=1)->torch.Tensor:
    "`n` random unit directions of `shape` (float64)."
    d = torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return d / d.flatten(1).norm(dim=1).view(-1, *[1] * len(shape))


@torch.no_grad()
def brute_amplification(net, x, r, d)->float:
    "max over the directions `d` of ‖f(x + r·d) − f(x)‖/r, in float64."
    net64, x64 = net.double(), x.double()
    return ((net64(x64 + r * d) - net64(x64)).norm(dim=1) / r).max().item()


def exact_distances(net, x):
    "(exact ℓ2 distance to the nearest activation-pattern change, exact distance to the decision boundary of the affine piece), from dense Jacobians."
    x = x.double()
    net = net.double()
    parts = lambda y: net.parts(y[None].view(1, *x.shape[1:]))[0]
    flat = x.flatten()
    jac = torch.func.jacrev(lambda y: {k: v.flatten() for k, v in parts(y).items()})(flat)
    val = {k: v.flatten() for k, v in parts(flat).items()}
    ratio = lambda d, g: torch.where(g.norm(dim=1) > 0, d / g.norm(dim=1), math.inf)
    dists = [ratio(val['z1'].abs(), jac['z1']), ratio(val['z3'].abs(), jac['z3']),
             ratio(torch.minimum(val['z2'].abs(), (val['z2'] - 6).abs()), jac['z2'])]
    C, H, W = net.parts(x)[0]['v'].shape[1:]        # 2×2 windows of v: the winner against each other entry
    idx = torch.arange(C * H * W).view(C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 2, 4).reshape(-1, 4)
    vv, gv = val['v'][idx], jac['v'][idx]           # [windows, 4], [windows, 4, n]
    a = vv.argmax(1)
    for j in range(4):
        other = a != j
        diff = gv[torch.arange(len(a)), a] - gv[:, j]
        gap = vv[torch.arange(len(a)), a] - vv[:, j]
        dists.append(ratio(gap, diff)[other])
    J = torch.func.jacrev(lambda y: net(y.view(1, *x.shape[1:])).flatten())(flat)
    logits = net(x).flatten()
    c = logits.argmax()
    dec = min(((logits[c] - logits[j]) / (J[c] - J[j]).norm()).item() for j in range(len(logits)) if j != c)
    net.float()
    return torch.cat(dists).min().item(), dec


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_region_and_decision_distance_against_dense_jacobians(seed):
    net, x = tiny(seed)
    exact_r, exact_dec = exact_distances(net, x)
    per, _ = certify(net, x, grid=0, patterns=0)
    r = per.iloc[0]
    assert 0 < r.r_lin_layer <= r.r_lin <= exact_r and exact_r <= 10 * r.r_lin
    assert r.r_lin_sharp and r.r_lin == pytest.approx(exact_r, rel=1e-6)     # enough budget: the exact minimum
    assert 0 < r.r_decision <= exact_dec and r.r_decision == pytest.approx(exact_dec, rel=1e-6)
    assert r.radius_affine == min(r.r_lin, r.r_decision)
    assert r.jacobian_lower <= r.jacobian_upper <= 1.2 * r.jacobian_lower


def test_budget_keeps_the_bound_below():
    "With almost no exact gradient norms the region radius is the cheap per-layer bound: still below the exact one."
    net, x = tiny(3)
    exact_r, _ = exact_distances(net, x)
    r = certify(net, x, grid=0, patterns=0, max_exact=1)[0].iloc[0]
    assert r.r_lin <= exact_r and r.r_lin_layer <= r.r_lin


def pattern(net, X):
    "The activation pattern of each input of a batch, as one bool tensor per input (pieces and max-pool winners)."
    parts, _ = net.parts(X)
    z2 = parts['z2'].flatten(1)
    win = F.max_pool2d(parts['v'], 2, return_indices=True)[1].flatten(1)
    return torch.cat([parts['z1'].flatten(1) > 0, z2 > 0, z2 > 6, parts['z3'] > 0, F.one_hot(win, parts['v'][0].numel()).flatten(1) > 0], 1)


def test_nothing_changes_inside_the_certified_ball():
    "Random points on the sphere of radius r_lin keep x's pattern (checked with the modules, not the certifier); the certifier's attack breaks the region just past its exact distance."
    net, x = tiny(4)
    net = net.double()
    x = x.double()
    cert = Certifier(net, tuple(x.shape[1:]))
    p = cert.point(x)
    bounds, (_, j_up, _) = cert.norm_bounds(p)
    r_lin = cert.region(p, bounds, j_up)['r_lin']
    d = torch.randn(4000, *x.shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for scale in (1 - 1e-9, .5, .1):
        y = x + scale * r_lin * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        with torch.no_grad(): assert (pattern(net, y) == pattern(net, x)).all()
    found = cert.pattern_search(p, bounds, r_lin * (1 - 1e-9), samples=64)
    assert found['random_breaks'] == found['attack_breaks'] == 0 and found['past_kink_breaks'] == found['attacks'] > 0
    steps, dists = cert.closest(p, bounds, k=1)                      # the closest kink, at 1.001 × r_lin, changes the pattern
    assert dists[0].item() == pytest.approx(r_lin, rel=1e-6)
    with torch.no_grad(): assert (pattern(net, x + 1.001 * r_lin * steps[:1]) != pattern(net, x)).any()


def mlp(seed, widths=(2, 10, 10, 3)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]): layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def first_change_along_rays(f, x, reach, angles=360, steps=1500):
    "Per ray from x (2-D), the first radius ≤ reach where f(x + r·u) differs from f(x), refined by bisection; the minimum over rays (inf if none)."
    t = torch.linspace(0, 2 * math.pi, angles + 1, dtype=torch.float64)[:-1]
    u = torch.stack([t.cos(), t.sin()], 1)
    rs = torch.linspace(0, reach, steps + 1, dtype=torch.float64)[1:]
    base = f(x[None])
    with torch.no_grad():
        moved = torch.stack([(f(x + r * u) != base).any(1) for r in rs], 1)             # [angles, steps]
    hit = moved.any(1)
    if not hit.any(): return math.inf
    k = moved.float().argmax(1)
    lo, hi = torch.where(k > 0, rs[(k - 1).clamp_min(0)], 0.), rs[k]
    for _ in range(40):
        mid = (lo + hi) / 2
        with torch.no_grad(): ch = (f(x + mid[:, None] * u) != base).any(1)
        lo, hi = torch.where(ch, lo, mid), torch.where(ch, mid, hi)
    return hi[hit].min().item()


def test_two_dimensional_exact_distances():
    "2-D inputs: the exact distances to the nearest pattern change and to the nearest class change, by dense rays and bisection."
    flips = []
    for seed in range(8):
        net, x = mlp(seed), torch.rand(2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        lin = [m for m in net if isinstance(m, nn.Linear)]
        def acts(y):
            out = []
            for m in lin[:-1]:
                y = m(y); out.append(y > 0); y = y.relu()
            return torch.cat(out, -1)
        r = certify(net, x[None], curve=False, patterns=0)[0].iloc[0]
        exact_lin = first_change_along_rays(acts, x, 2 * r.r_lin)
        assert r.r_lin <= exact_lin * (1 + 1e-6) and exact_lin <= 10 * r.r_lin
        flip = first_change_along_rays(lambda y: net(y).argmax(-1, keepdim=True), x, 20 * r.radius)
        assert r.radius <= flip * (1 + 1e-6)                                      # never above the exact distance
        flips.append(flip / r.radius)
    # within 10× on most: a class region can be far (or unbounded) where tracking stops certifying
    assert sorted(flips)[len(flips) // 2] <= 10 and sum(f <= 10 for f in flips) >= 6, flips


def test_u_above_brute_force():
    "U(r) ≥ the amplification of 20 000 random points on the sphere and of gradient ascent, from r_lin to 100 r_lin."
    net, x = tiny(5)
    per, curve = certify(net, x, grid=15, patterns=0)
    r_lin = per.r_lin[0]
    assert curve.tracked.all() and (curve.U >= curve.attack).all() and len(curve) == 15
    assert curve.U[0] == pytest.approx(per.jacobian_upper[0])                  # at r_lin: the certified ‖J‖
    d = sphere(x.shape[1:])
    for row in curve.itertuples(): assert row.U >= brute_amplification(net, x, row.radius, d)
    assert curve.radius.max() >= 100 * r_lin * (1 - 1e-9)
    assert len(plot_curve(curve, per.r_lin).axes[1].lines) == 2                   # the ratio of the one image and the 10× line


def test_functions_and_refusals():
    net, x = tiny(6)
    x2 = torch.cat([x, torch.rand_like(x)])
    r_lin, best = linear_region_radius(net, x2), certified_radius(net, x2, grid=4)
    radius = torch.tensor(best.radius.values)
    assert r_lin.shape == radius.shape == (2,) and (r_lin > 0).all() and (radius > 0).all()
    assert (radius >= torch.tensor(best.region.values)).all() and set(best.method) <= {'region walk', 'tracking', 'layer walk', 'CROWN'}
    U = lipschitz_curve(net, x2, [r_lin.min().item() / 2])
    assert U.shape == (2, 1) and torch.isfinite(U).all()
    with pytest.raises(UnsupportedOperationError, match='not piecewise linear'):
        Certifier(nn.Sequential(nn.Flatten(), nn.Linear(36, 4), nn.Sigmoid()).eval(), (1, 6, 6))
    with pytest.raises(ValueError, match='shape'): Certifier(net, (1, 6, 6)).point(torch.rand(1, 1, 5, 5))
    with pytest.raises(ValueError, match='NaN'): certify(net, x * math.nan)


def test_study_script_with_a_partial_experiment(tmp_path):
    "scripts/certify_study.py takes the photos an experiment measured first, and gives the others the same L_f (a missing one crashed them)."
    data, exp, out = tmp_path/'imgs', tmp_path/'exp', tmp_path/'out'
    data.mkdir(); exp.mkdir()
    names = ['n01440764_tench.JPEG', 'n01443537_goldfish.JPEG', 'n01484850_great_white_shark.JPEG']
    torch.manual_seed(0)
    for n in names: Image.fromarray((torch.rand(70, 80, 3) * 255).byte().numpy()).save(data/n)
    lip = 1e9  # any upper bound on L_f will do: it caps U(r) and gives the global radius
    rows = [dict(file=names[1], measurement='estimate', lipschitz=lip, certified_radius=1e-9, label=1, prediction=0),
            dict(file=names[1], measurement='flip_radius', flip_radius=0.5)]
    (exp/'results-0-of-1.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    res = subprocess.run([sys.executable, str(ROOT/'scripts'/'certify_study.py'), '--model', 'alexnet', '--weights', 'untrained', '--size', '64',
                          '--data', str(data), '--experiment', str(exp), '--out', str(out), '--device', 'cpu', '--limit', '2',
                          '--grid', '2', '--steps', '16', '--max-exact', '8', '--patterns', '2', '--chunk', '8'],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    got = [json.loads(l) for l in (out/'results.jsonl').read_text().splitlines()]
    assert [r['file'] for r in got][0] == names[1] and got[0]['flip_radius'] == 0.5 and len(got) == 2
    assert got[1]['flip_radius'] is None and all(r['lipschitz'] == lip and 0 < r['r_lin'] <= r['radius'] < 0.5 and math.isfinite(r['jacobian_upper']) for r in got)
    assert (out/'per_image.csv').exists() and res.stdout.count('GB resident') == 2   # each photo's line says the memory held at its peak


def test_am_compare_row_norms():
    "scripts/am_compare.py's stand-in for Avant & Morgansen's ‖a_iᵀ D‖ (sqrt of conv2d(mask, W²)) equals the row norms of the dense convolution matrix with the masked columns removed."
    sys.path.insert(0, str(ROOT/'scripts'))
    try: from am_compare import row_norms
    finally: sys.path.pop(0)
    torch.manual_seed(0)
    for conv in (nn.Conv2d(3, 4, 5, stride=2, padding=2), nn.Conv2d(4, 6, 3, padding=1, dilation=2, groups=2)):
        shape = (1, conv.in_channels, 9, 9)
        A = torch.func.jacrev(lambda v: F.conv2d(v.view(shape), conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups).flatten())(
            torch.zeros(math.prod(shape))).detach()                            # [m, n]: the convolution matrix
        for d in (None, torch.rand(A.shape[1]) < .5):
            want = A.norm(dim=1) if d is None else (A * d).norm(dim=1)
            got = row_norms(None)(conv, torch.Size(shape), None, d=d)
            assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-7)


class Branchy(nn.Module):
    "conv → BN → ReLU → overlapping max pool → cat(conv → LeakyReLU, itself) → conv → ReLU6 + 1×1 conv → avg pool → linear: every join and fused layer the walk meets."
    def __init__(self, c=3, classes=4):
        super().__init__()
        self.conv1, self.bn, self.act, self.leaky = nn.Conv2d(2, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.side, self.mix, self.short = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(2 * c, c, 3, padding=1), nn.Conv2d(2 * c, c, 1)
        self.avg, self.fc = nn.AvgPool2d(2), nn.Linear(c * 4, classes)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-.2, .2); self.bn.running_var.uniform_(.5, 2); self.bn.weight.uniform_(.5, 1.5)
            self.mix.weight.mul_(6); self.mix.bias.add_(2)                       # ReLU6 entries on all three pieces
    def forward(self, x):
        h = self.pool(self.act(self.bn(self.conv1(x))))
        h = torch.cat([self.leaky(self.side(h)), h], 1)
        h = F.relu6(self.mix(h)) + self.short(h)
        return self.fc(self.avg(h).flatten(1))


def branchy(seed):
    torch.manual_seed(seed)
    return Branchy().eval(), torch.rand(1, 2, 8, 8)


@pytest.mark.parametrize('seed', [0, 1])
def test_layer_walk_bounds_every_node(seed):
    "The masked layer walk: every node of the network moves by at most its bounds at 3 000 points of each ball (r_lin to 10⁵ r_lin), each masked norm lies above its dense matrix's, U_layers above brute force."
    from condbook.certify import _targets_fn
    from condbook.estimator import run_nodes
    from condbook.norms import dense_matrix, linear_part
    net, x = branchy(seed)
    cert = Certifier(net, tuple(x.shape[1:]))
    p = cert.point(x)
    bounds, (_, j_up, _) = cert.norm_bounds(p)
    r_lin = cert.region(p, bounds, j_up)['r_lin']
    rs = [r_lin * k for k in (1, 30, 1e3, 1e5)]
    walk = cert.layer_walk(p, rs)
    run, g = _targets_fn(cert, list(walk.M)), torch.Generator().manual_seed(seed)
    for i, r in enumerate(rs):
        d = torch.randn(3000, *x.shape[1:], generator=g, dtype=torch.float64)
        d = r * torch.rand(3000, 1, 1, 1, generator=g, dtype=torch.float64) ** .1 * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        vals = run(p.x + d)
        for n in walk.M:
            dv = (vals[n] - p.values[n]).flatten(1)
            assert (dv.abs() <= walk.m[n][i].flatten()).all() and (dv.norm(dim=1) <= walk.M[n][i]).all(), (n.name, r)
        f = (vals[cert.output_node] - p.values[cert.output_node]).flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)
        assert f.max() <= walk.M[cert.output_node][i] / r
    assert len(walk.factors) == 5                                                     # conv1+bn, side, mix, short, avg+fc
    for op, (norm, Ds, Dz) in walk.factors.items():
        head = op.layers[0]
        A = dense_matrix(lambda t: run_nodes(cert.gm, head.nodes, head.source, t, p.values, linear=linear_part),
                         tuple(p.values[head.source].shape[1:]), dtype=torch.float64)
        exact = torch.stack([torch.linalg.matrix_norm(Dz[i].flatten()[:, None] * A * Ds[i].flatten(), 2) for i in range(len(rs))])
        assert (norm >= exact).all() and (norm <= 1.1 * exact + 1e-12).all()
    assert (walk.M[cert.output_node][1:] > 0).all()


def test_walk_runs_each_distinct_mask_once(monkeypatch):
    "Radii whose masks are equal share one Lanczos run: a repeated radius adds no batch item, and every row is what the walk gives without the repeat."
    import condbook.certify as C
    net, x = branchy(1)
    cert = Certifier(net, tuple(x.shape[1:]))
    p = cert.point(x)
    bounds, (_, j_up, _) = cert.norm_bounds(p)
    r_lin = cert.region(p, bounds, j_up)['r_lin']
    sizes, lanczos = [], C.lanczos
    monkeypatch.setattr(C, 'lanczos', lambda mv, rmv, v0, steps: sizes.append(len(v0)) or lanczos(mv, rmv, v0, steps))
    rs = [r_lin * 30, r_lin * 1e3, r_lin * 1e5]
    once = cert.layer_walk(p, rs, radii_in_budget=4)
    n_once, sizes[:] = list(sizes), []
    twice = cert.layer_walk(p, rs[:2] + rs[1:], radii_in_budget=4)
    assert sizes == n_once and max(sizes) == 3 and min(sizes) < 3       # the repeat costs nothing; saturated masks merge too
    for n in once.M:
        assert torch.equal(twice.M[n][1], twice.M[n][2]) and torch.equal(twice.m[n][1], twice.m[n][2])
        torch.testing.assert_close(twice.M[n][[0, 1, 3]], once.M[n], rtol=1e-9, atol=0)
        torch.testing.assert_close(twice.m[n][[0, 1, 3]], once.m[n], rtol=1e-9, atol=0)


def test_row_norms_against_dense():
    "row_norms: exact through conv → batch norm, an upper bound (Minkowski) through avg pool → linear."
    from condbook.certify import row_norms
    from condbook.estimator import Piece, record, run_nodes
    from condbook.norms import dense_matrix, linear_part
    net, x = branchy(3)
    cert = Certifier(net, tuple(x.shape[1:]))
    env = record(cert.gm, x.double().expand(2, -1, -1, -1))
    g, seen = torch.Generator().manual_seed(0), []
    for head in [o.layers[0] for o in cert.ops if isinstance(o, Piece) and o.layers[0].affine]:
        shape = tuple(env[head.source].shape[1:])
        A = dense_matrix(lambda t: run_nodes(cert.gm, head.nodes, head.source, t, env, linear=linear_part), shape, dtype=torch.float64)
        D = (torch.rand(2, *shape, generator=g) < .5).double()
        exact = (A[None] * D.flatten(1)[:, None, :]).norm(dim=2)
        rho = row_norms(head, D, env, cert.gm).flatten(1)
        assert (rho >= exact).all(), head.name
        ops = [n.meta['call'].op.name for n in head.nodes if n.meta['call'].role != 'transparent']
        seen.append(tuple(ops))
        if ops[0] == 'convolution / linear' and len(ops) <= 2: assert torch.allclose(rho, exact, rtol=1e-8, atol=0), head.name
        else: assert (rho > exact * 1.01).any()                                   # Minkowski after the second map that mixes
    assert ('convolution / linear', 'batchnorm') in seen and ('average pooling', 'convolution / linear') in seen


def test_curve_past_tracking_from_layers():
    "With a tiny tracking budget and no global bound, U(r) past tracking comes from the masked layer product: finite, above the attack and brute force, and the certified radius stays below the exact flip distance."
    net, x = tiny(7)
    per, curve = certify(net, x, grid=20, patterns=0, max_exact=2)
    per0, curve0 = certify(net, x, grid=20, patterns=0, max_exact=2, layer_radii=0)
    past = curve[~curve.tracked]
    assert len(past) and (past.bound == 'layers').all() and past.U.map(math.isfinite).all() and (past.U >= past.attack).all()
    assert not curve0[~curve0.tracked].U.map(math.isfinite).any() and (curve0[~curve0.tracked].bound == 'none').all()
    assert per.radius[0] >= per0.radius[0]
    d = sphere(x.shape[1:])
    for row in past.itertuples(): assert row.U >= brute_amplification(net, x, row.radius, d)
    with torch.no_grad():                                                          # no flip inside the certified ball along random rays
        assert (net.double()(x.double() + per.radius[0] * (1 - 1e-9) * d).argmax(1) == net.double()(x.double()).argmax()).all()


def zero_window_net(seed):
    "conv (bias −0.3) → ReLU → 2×2 max pool → linear (float64) on a dim image: many max-pool windows of exact zeros."
    torch.manual_seed(seed)
    conv = nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad(): conv.bias.fill_(-.3)
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 3)).double().eval(), \
        .3 * torch.rand(1, 1, 6, 6, dtype=torch.float64)


def ascent_amplification(net, x, r, n=1000, iters=30, seed=0)->float:
    "max of ‖f(x+δ) − f(x)‖/r over the sphere ‖δ‖ = r: projected gradient ascent from `n` random starts."
    d = torch.randn(n, *x.shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    unit = lambda t: t / t.flatten(1).norm(dim=1).clamp_min(1e-300).view(-1, *[1] * (x.dim() - 1))
    d, f0 = r * unit(d), net(x).detach()
    for _ in range(iters):
        d.requires_grad_()
        a = (net(x + d) - f0).norm(dim=1) / r
        g, = torch.autograd.grad(a.sum(), d)
        d = r * unit(d.detach() + .3 * r * unit(g))
    with torch.no_grad(): return ((net(x + d) - f0).norm(dim=1) / r).max().item()


def test_pairs_of_zeros_are_tracked():
    "Past r_lin a zero of a window of zeros can turn on and win its window: U(r) stays above gradient ascent (it fell below, to 0, when such pairs were dropped)."
    net, x = zero_window_net(8)
    per, curve = certify(net, x, grid=12, patterns=0)
    past = curve[(curve.radius > per.r_lin[0]) & curve.tracked]
    assert len(past) >= 8
    for row in past.itertuples(): assert row.U >= ascent_amplification(net, x, row.radius), row


def tie_cnn(seed):
    "conv → ReLU → overlapping max pool (3×3, stride 2) → conv → ReLU → linear (float64), and an image whose top-left block is 0: tied windows."
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    x = torch.rand(1, 1, 9, 9, dtype=torch.float64)
    x[..., :5, :5] = 0
    return net.double().eval(), x


@pytest.mark.parametrize('seed', [0, 4])
def test_ties_give_a_positive_sound_radius(seed):
    "Windows that tie at x make r_lin = 0; the certified radius is positive, U(r) lies above brute force, and neither L2 PGD nor DDN flips the class inside."
    from condbook.attacks import flip_radius
    net, x = tie_cnn(seed)
    per, curve = certify(net, x, grid=12, patterns=0)
    r = per.iloc[0]
    assert r.r_lin == 0 and r.ties > 0 and r.margin > 0 and r.radius > 0
    d = sphere(x.shape[1:], n=4000)
    for row in curve.itertuples(): assert row.U >= max(row.attack, brute_amplification(net, x, row.radius, d))
    assert r.radius <= flip_radius(net, x, 'l2_pgd', eps_max=2., steps=10, nb_iter=20, ddn_steps=100).item()   # PGD and DDN


def test_ties_two_dimensional_exact():
    "2-D inputs at x = 0 with four first-layer biases 0 (ReLUs at their kink): radius positive, below the exact flip distance (dense rays)."
    for seed in range(4):
        net, x = mlp(seed), torch.zeros(2, dtype=torch.float64)
        with torch.no_grad(): net[0].bias[:4] = 0
        r = certify(net, x[None], curve=False, patterns=0)[0].iloc[0]
        flip = first_change_along_rays(lambda y: net(y).argmax(-1, keepdim=True), x, 20 * r.radius)
        assert r.r_lin == 0 and r.ties == 4 and 0 < r.radius <= flip * (1 + 1e-6), (seed, r.radius, flip)


def small_cnn(seed, n=8):
    "conv → ReLU → overlapping max pool → conv → ReLU → linear (float64, random weights), and n images in [0, 1]."
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(8, 8, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(32, 6))
    return net.double().eval(), torch.rand(n, 3, 10, 10, dtype=torch.float64)


def test_ddn_flips_are_real_small_and_above_the_certified_radius():
    "DDN's points flip the class inside the box; its flip radius is at most L2 PGD's and Carlini–Wagner's (1%) on most images and never below the certified radius."
    from condbook.attacks import ddn, flip_radius
    net, x = small_cnn(2)
    r = ddn(net, x)
    with torch.no_grad(): assert (net(r.x_adv).argmax(1) != net(x).argmax(1)).all() and r.flipped.all()
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    torch.testing.assert_close(r.distance, (r.x_adv - x).flatten(1).norm(dim=1), rtol=1e-12, atol=0)
    found = flip_radius(net, x, 'ddn')
    assert torch.equal(found, r.distance)
    pgd = flip_radius(net, x, 'l2_pgd', eps_max=4., ddn_steps=0)
    cw = flip_radius(net, x, 'cw_l2', ddn_steps=0)
    assert (found <= 1.01 * torch.minimum(pgd, cw)).sum() >= 7, (found, pgd, cw)
    assert torch.equal(flip_radius(net, x, 'l2_pgd', eps_max=4., ddn_steps=100), torch.minimum(pgd, found))   # both, the smaller
    assert (torch.tensor(certified_radius(net, x).radius.values) <= found).all()


def test_ddn_on_ties_and_without_host_syncs(monkeypatch):
    "On the tie CNN, DDN stays above the certified radius; the loop never asks the device for a value: the host reads no more at 50 steps than at 5."
    from condbook.attacks import ddn, flip_radius
    net, x = tie_cnn(4)
    assert certified_radius(net, x).radius[0] <= flip_radius(net, x, 'ddn').item()
    reads = []
    for name in ('__bool__', 'item', 'tolist', 'cpu', 'nonzero', '__float__', '__int__'):
        orig = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=orig, _n=name, **k: reads.append(_n) or _o(self, *a, **k))
    counts = []
    for steps in (5, 50):
        reads.clear(); ddn(net, x.expand(3, -1, -1, -1), steps=steps); counts.append(len(reads))
    assert counts[0] == counts[1] and counts[0] > 0, counts   # > 0: the checks of the input are counted
