import dataclasses, warnings
import pytest, torch
from torch import nn
from condbook.backends import (PRESETS, QuantSpec, histogram_range, observe, qconfig_mapping, spec_kept, spec_logits,
                               spec_predicted, torch_fake_quant, HIST_BINS)
from condbook.bitwidth import Widths
from condbook.estimator import Estimator

@pytest.fixture(scope='module')
def small_cnn():
    "A conv-BN-ReLU x2 + linear CNN with non-trivial BatchNorm, its estimator, calibration and evaluation images."
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                        nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 7 * 7, 10)).eval()
    with torch.no_grad():
        for m in cnn.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2); m.weight.uniform_(0.5, 1.5); m.bias.normal_(); m.running_mean.normal_()
    g = torch.Generator().manual_seed(2)
    return cnn, Estimator(cnn, (3, 16, 16), cache=False), torch.rand(32, 3, 16, 16, generator=g), torch.rand(48, 3, 16, 16, generator=g)

def test_exported_allocation_keeps_the_same_photos_in_torch_ao(small_cnn):
    "issue 38: a spec with per-module weight widths, exported as a QConfigMapping, keeps the photos condbook says it keeps."
    cnn, est, x_cal, x = small_cnn
    top1 = cnn(x).argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for name, bits in (('fx_x86', Widths({'0': 2, '3': 5, '7': 3}, 6)), ('pt2e_x86', Widths({'0': 3, '3': 2, '7': 4}, 4)),
                           ('xnnpack', 3)):
            spec = PRESETS[name]
            p = torch_fake_quant(cnn, x_cal, spec, bits)
            with torch.no_grad(): theirs = p(x)
            ours = spec_logits(est, x, spec, bits, observe(est, x_cal, spec))
            assert (ours - theirs).abs().max() < 1e-5, name
            assert torch.equal(spec_kept(est, x, spec, bits, observe(est, x_cal, spec)), theirs.argmax(1) == top1), name
        widths = {n: m.quant_max for n, m in p.named_modules() if n.endswith('weight_fake_quant')}
        assert widths == {'0.weight_fake_quant': 3, '3.weight_fake_quant': 3, '7.weight_fake_quant': 3}  # xnnpack 3 bits: [-3, 3]
        alloc = torch_fake_quant(cnn, x_cal, PRESETS['fx_x86'], Widths({'0': 2, '3': 5, '7': 3}, 6))
        assert [m.quant_max for n, m in alloc.named_modules() if n.endswith('weight_fake_quant')] == [1, 15, 3]

def test_histogram_observer_is_torch_aos(small_cnn):
    "issue 38: observer 'histogram' gives torch.ao HistogramObserver's range at every point (all images in one batch)."
    from torch.ao.quantization import HistogramObserver
    from condbook.bitwidth import values_at
    cnn, est, x_cal, x = small_cnn
    spec = dataclasses.replace(PRESETS['pt2e_x86'], observer='histogram')
    r = observe(est, x_cal, spec)
    for v, lo, hi in zip(values_at(est.gm, r.points, x_cal), r.lo, r.hi):
        obs = HistogramObserver(); obs(v)
        assert (lo.float(), hi.float()) == tuple(t.float() for t in obs._non_linear_param_search())
    t = torch.distributions.StudentT(2.).sample((5000,))
    cut = histogram_range(torch.histc(t, HIST_BINS, t.min().item(), t.max().item()), t.min(), t.max())
    assert cut[0] >= t.min() and cut[1] < t.max()                                       # heavy tails: the range is cut

def test_prediction_is_a_probability_per_photo(small_cnn):
    cnn, est, x_cal, x = small_cnn
    spec = PRESETS['xnnpack']
    p = spec_predicted(est, x, spec, 8, observe(est, x_cal, spec), pairs=2)
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all() and p.mean() > 0.9

def test_bad_spec_and_export_input(small_cnn):
    cnn, est, x_cal, x = small_cnn
    with pytest.raises(ValueError, match='percentile must be in'): QuantSpec(observer='percentile', percentile=120)
    with pytest.raises(ValueError, match='torch.ao has no percentile observer'):
        qconfig_mapping(dataclasses.replace(PRESETS['fx_x86'], observer='percentile'), 8)
    with pytest.raises(ValueError, match="takes widths 2-8, got 9"): qconfig_mapping(PRESETS['fx_x86'], Widths({'0': 9}, 8))
    with pytest.raises(ValueError, match='pass Widths\\(allocation, activation width\\)'): qconfig_mapping(PRESETS['fx_x86'], {'0': 4})
    with pytest.raises(ValueError, match="no weight module 'conv9'"):
        spec_logits(est, x, PRESETS['fx_x86'], {'conv9': 4}, target='weights')
    with pytest.raises(ValueError, match='pairs must be at least 1'): spec_predicted(est, x, PRESETS['fx_x86'], 8, target='weights', pairs=0)
