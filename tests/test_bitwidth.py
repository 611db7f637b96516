import math
import pytest, torch, torchvision
from torch import nn
from condbook.bitwidth import (FLOAT_FORMATS, NATIVE_DTYPES, TARGETS, Fixed, Float, Roundoff, allocate_bits, compare_allocation,
                               measure_bits, predict_bits, round_fixed, round_float, weight_sensitivities)
from condbook.estimator import Estimator


def residual_net():
    "A small residual CNN (a torchvision BasicBlock) so joins are rounded and bounded too."
    torch.manual_seed(0)
    block = torchvision.models.resnet.BasicBlock(8, 8)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), block, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d): m.running_var.uniform_(0.5, 2); m.weight.uniform_(0.5, 1.5); m.bias.normal_()
    return net


def test_emulation_matches_native_casts_bit_for_bit():
    x = torch.randn(50_000) * torch.exp2(torch.randint(-40, 20, (50_000,)).float())
    for name, fmt in FLOAT_FORMATS.items():
        assert torch.equal(round_float(x, fmt), x.to(NATIVE_DTYPES[name]).float()), name
    w = torch.randn(4, 3, 3, 3)
    r = round_fixed(w, Fixed(4, per_channel=True))
    assert ((r - w).flatten(1).abs() <= w.flatten(1).abs().amax(1, keepdim=True) / 7 / 2 + 1e-7).all()


def test_bound_holds_and_predictions_bracket_measurement():
    net, x = residual_net(), torch.rand(4, 3, 12, 12)
    ro = Roundoff(Estimator(net, (3, 12, 12), cache=False), x)
    for fmt in (Fixed(4), Fixed(8, per_channel=True), Float(3), Float(6, 5)):
        for target in TARGETS:
            err, _ = ro.measure(fmt, target)
            assert (err <= ro.bound(fmt, target)).all(), (fmt, target)
            assert torch.isfinite(ro.estimate(fmt, target)).all()
    for fmt in ('fixed', 'float'):
        for target in TARGETS:
            bound, est = predict_bits(net, x, fmt, target), predict_bits(net, x, fmt, target, kind='estimate')
            meas = measure_bits(net, x, fmt, target)
            assert bound.shape == est.shape == meas.shape == (4,)
            assert (bound >= meas).all() and (bound >= est).all()
            assert (meas >= 1).all() and torch.isfinite(meas).all()


def test_mixed_precision_keeps_size_and_lowers_the_bound():
    net, x = residual_net(), torch.rand(3, 3, 12, 12)
    ro = Roundoff(Estimator(net, (3, 12, 12), cache=False), x)
    sens = weight_sensitivities(ro)
    assert (sens.sensitivity > 0).all()
    bits = allocate_bits(sens, 5)
    assert (bits * sens.set_index('module').params).sum() <= 5 * sens.params.sum() and bits.between(2, 32).all()
    cmp = compare_allocation(ro, sens, 5)
    assert cmp.loc['mixed', 'megabits'] <= cmp.loc['uniform', 'megabits'] and cmp.loc['mixed', 'bound'] <= cmp.loc['uniform', 'bound']


def test_bad_arguments():
    net, x = residual_net(), torch.rand(2, 3, 12, 12)
    with pytest.raises(ValueError, match="'fixed' or 'float'"): predict_bits(net, x, fmt='int')
    with pytest.raises(ValueError, match='weights, activations, both'): measure_bits(net, x, target='everything')
    with pytest.raises(ValueError, match='bound, estimate'): predict_bits(net, x, kind='exact')
