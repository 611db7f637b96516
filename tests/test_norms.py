import math
import pytest, torch
from torch import nn
from condbook.norms import (Normalize, _memory_cache, cache_dir, dense_matrix, linear_part, operator_norm, power_iteration,
                            top_singular_value)
from condbook.ops import lipschitz_constant, pool_window_counts


def dense_norm(module, shape):
    m = module.double()
    return torch.linalg.svdvals(dense_matrix(linear_part(m), shape, dtype=torch.float64))[0].item()


@pytest.mark.parametrize('module,shape', [
    (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (4, 9, 9)),
    (nn.Conv2d(3, 5, 5, stride=3, padding=2, dilation=1), (3, 11, 11)),
    (nn.Conv2d(2, 2, 3, dilation=2, padding=2, padding_mode='circular'), (2, 7, 7)),
    (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)).eval(), (3, 5, 5)),
    (nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 7, 7)),
    (Normalize([0.5, 0.4, 0.3], [0.2, 0.3, 0.4]), (3, 3, 3)),
])
def test_operator_norm_matches_dense_svd(module, shape):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d): m.running_var.uniform_(0.3, 3); m.weight.data.uniform_(-2, 2)
    ref = dense_norm(module, shape)
    assert abs(operator_norm(module.float(), shape, cache=False) - ref) <= 1e-4 * ref


def test_reshaped_kernel_is_not_the_operator_norm():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    reshaped = torch.linalg.matrix_norm(conv.weight.detach().reshape(8, -1), 2).item()
    assert operator_norm(conv, (8, 16, 16)) > 1.2 * reshaped


def test_lanczos_needs_fewer_products_than_power_iteration():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(120, 80, dtype=torch.float64, generator=g)
    v0 = torch.randn(1, 80, dtype=torch.float64, generator=g)
    lz = top_singular_value(lambda v: v @ M.T, lambda u: u @ M, v0, tol=1e-10)
    pw = power_iteration(lambda v: v @ M.T, lambda u: u @ M, v0, tol=1e-10)
    ref = torch.linalg.svdvals(M)[0]
    assert abs(lz.sigma[0] - ref) <= 1e-9 * ref and abs(pw.sigma[0] - ref) <= 1e-4 * ref
    assert lz.applications < pw.applications


def test_overlapping_maxpool_constant_is_attained():
    pool = nn.MaxPool2d(3, 2)
    L = lipschitz_constant(pool, (1, 13, 13))
    assert L == 2.0
    counts = pool_window_counts(pool, (1, 13, 13))
    r, c = divmod(counts.argmax().item(), 13)
    x = -torch.ones(1, 1, 13, 13); x[..., r, c] = 0
    x2 = x.clone(); x2[..., r, c] = 1
    assert math.isclose(((pool(x2) - pool(x)).norm() / (x2 - x).norm()).item(), L, rel_tol=1e-6)
    x, d = torch.randn(500, 1, 13, 13), torch.randn(500, 1, 13, 13)
    assert ((pool(x + d) - pool(x)).flatten(1).norm(dim=1) <= L * d.flatten(1).norm(dim=1) + 1e-5).all()


def test_constants_are_cached_on_disk():
    conv = nn.Conv2d(3, 4, 3)
    first = operator_norm(conv, (3, 10, 10))
    _memory_cache.clear()
    files = list((cache_dir()/'constants').glob('*.json'))
    assert files and operator_norm(conv, (3, 10, 10)) == first


def test_affine_only_and_eval_only():
    with pytest.raises(TypeError, match='not an affine layer'): operator_norm(nn.ReLU(), (3,))
    with pytest.raises(ValueError, match='training mode'): operator_norm(nn.BatchNorm2d(3), (3, 4, 4))
