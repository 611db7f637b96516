import math
import pytest, torch, torchvision
import torch.nn.functional as F
from torch import nn
from condbook.bitwidth import (ALLOCATIONS, FLOAT_FORMATS, NATIVE_DTYPES, TARGETS, Fixed, Float, Roundoff, Widths, allocate_bits, bitwidth_study,
                               calibrate, clip_static, compare_allocation, make_formats, measure_agreement, measure_bits, predict_agreement,
                               predict_bits, round_fixed, round_float, round_static, rounded_weights, study_split, survival_probability, values_at,
                               weight_sensitivities)
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


def toy_classifier():
    "The residual net with a nearest-class-mean head on toy images (templates in noise): answers that depend on the image; (net, images(n, seed))."
    net = residual_net()
    templates = F.interpolate(torch.randn(10, 3, 4, 4, generator=torch.Generator().manual_seed(0)), size=12, mode='bilinear')
    def images(n, seed):
        g = torch.Generator().manual_seed(seed)
        return (templates[torch.randint(0, 10, (n,), generator=g)] + 2 * torch.randn(n, 3, 12, 12, generator=g)).sigmoid()
    with torch.no_grad():
        x, y = images(500, 1), None
        g = torch.Generator().manual_seed(1); y = torch.randint(0, 10, (500,), generator=g)
        phi = net[:-1](x)
        mu = torch.stack([phi[y == k].mean(0) for k in range(10)])
        s = 10 / phi.std()
        net[-1].weight.copy_((mu - mu.mean(0)) * s); net[-1].bias.copy_(-0.5 * ((mu ** 2).sum(1) - (mu ** 2).sum(1).mean()) * s)
    return net, images


def test_emulation_matches_native_casts_bit_for_bit():
    x = torch.randn(50_000) * torch.exp2(torch.randint(-40, 20, (50_000,)).float())
    for name, fmt in FLOAT_FORMATS.items():
        assert torch.equal(round_float(x, fmt), x.to(NATIVE_DTYPES[name]).float()), name
    w = torch.randn(4, 3, 3, 3)
    assert torch.equal(round_fixed(w, Fixed(4, per_channel=True)),
                       torch.fake_quantize_per_channel_affine(w, w.flatten(1).abs().amax(1) / 7, torch.zeros(4, dtype=torch.int32), 0, -7, 7))


def test_bound_holds_and_predictions_bracket_measurement():
    net, x = residual_net(), torch.rand(4, 3, 12, 12)
    est = Estimator(net, (3, 12, 12), cache=False)
    cal = calibrate(est, torch.rand(16, 3, 12, 12), 'percentile', percentile=99.)  # clips: the bound must cover clipping too
    for ro in (Roundoff(est, x), Roundoff(est, x, calibration=cal, fold_batchnorm=True)):
        for fmt in (Fixed(4), Fixed(8, per_channel=True), Float(3), Float(6, 5)):
            for target in TARGETS:
                err, _ = ro.measure(fmt, target)
                assert (err <= ro.bound(fmt, target)).all(), (ro.deployed, fmt, target)
                assert torch.isfinite(ro.estimate(fmt, target)).all()
        for fmt in ('fixed', 'float'):
            for target in TARGETS:
                bound, est_bits = predict_bits(ro, x, fmt, target), predict_bits(ro, x, fmt, target, kind='estimate')
                assert (bound >= measure_bits(ro, x, fmt, target)).all() and (bound >= est_bits).all()


def test_a_vector_of_widths_gives_the_numbers_of_each_width():
    net, x = residual_net(), torch.rand(3, 3, 12, 12)
    est = Estimator(net, (3, 12, 12), cache=False)
    ro = Roundoff(est, x, calibration=calibrate(est, torch.rand(8, 3, 12, 12)), fold_batchnorm=True)
    widths = [3, 6, 11]
    for fmt in ('fixed', 'float'):
        vec = make_formats(fmt, widths, per_channel=True)
        for target in TARGETS:
            for name in ('bound', 'estimate', 'margin_sigma', 'agreement'):
                one = torch.stack([getattr(ro, name)(make_formats(fmt, b, per_channel=True), target) for b in widths], 1)
                assert torch.allclose(getattr(ro, name)(vec, target), one, rtol=1e-9, atol=0), (fmt, target, name)


def test_static_ranges_clip_and_round_as_pytorch_does():
    net, x = residual_net(), torch.rand(32, 3, 12, 12)
    est = Estimator(net, (3, 12, 12), cache=False)
    cmax, cpct = calibrate(est, x, 'max'), calibrate(est, x, 'percentile', percentile=99.)
    assert (cpct.amax <= cmax.amax).all() and (cpct.amax < cmax.amax).any()
    for v, a, s, p in zip(values_at(est.gm, cmax.points, x), cmax.amax, cmax.signed, cpct.amax):
        assert torch.equal(clip_static(v, a, s), v)                           # max: nothing of its own images is clipped
        assert (v.abs() > p).double().mean() <= 0.01 + 1 / 1024                # percentile 99: about 1% is
        assert s == bool((v < 0).any())
        q = 127 if s else 255
        ref = torch.fake_quantize_per_tensor_affine(v, float(a / q), 0, -q if s else 0, q)
        assert torch.allclose(round_static(v, a, s, Fixed(8)), ref, rtol=0, atol=1e-6 * float(a))


def test_predicted_agreement_follows_the_measured_one():
    net, images = toy_classifier()
    est = Estimator(net, (3, 12, 12), cache=False)
    x, cal = images(300, 2), calibrate(est, images(100, 3))
    # the ~2000 weights of this net are rounded once for all images: below 8 bits their errors do not average out image by image
    # (measured at 5-6 bits: off by ~0.12), so weights are held to 8 bits and up; activations (fresh errors per image) from 6 bits (at 5 the linearisation is off by ~0.08)
    for target, widths in (('weights', [8, 10, 12]), ('activations', [6, 8, 10]), ('both', [8, 10, 12])):
        p = predict_agreement(net, x, 'fixed', target, widths, calibration=cal, est=est, fold_batchnorm=True)
        m = measure_agreement(net, x, 'fixed', target, widths, calibration=cal, est=est, fold_batchnorm=True)
        assert (p - m).abs().max() < 0.05, (target, p, m)
        assert m[-1] >= m[0] and p[-1] > p[0]
    sig = torch.tensor([[1e-4, 1e4]], dtype=torch.float64)
    gaps = torch.tensor([[math.inf, 1., 2.]], dtype=torch.float64)
    assert torch.allclose(survival_probability(gaps, sig), torch.tensor([[1., 1 / 3]], dtype=torch.float64), atol=1e-3)


def test_sampled_agreement_holds_where_the_linearisation_fails():
    "Static activations at 4 and 6 bits: fresh errors per image, so the measured fraction is a fair target; at 4 the linearised model is far off."
    net, images = toy_classifier()
    est = Estimator(net, (3, 12, 12), cache=False)
    x, cal = images(300, 2), calibrate(est, images(100, 3))
    ro = Roundoff(est, x, draws=0, calibration=cal, fold_batchnorm=True)
    widths = [4, 6]
    sampled, linearised = (predict_agreement(ro, x, 'fixed', 'activations', widths, pairs=k) for k in (4, 0))
    measured = measure_agreement(ro, x, 'fixed', 'activations', widths)
    assert (sampled - measured).abs().max() < 0.05, (sampled, measured)
    assert (linearised - measured).abs().max() > 2 * (sampled - measured).abs().max(), (linearised, sampled, measured)
    once = ro.sampled_agreement(Fixed(4), 'activations', pairs=2)
    assert torch.equal(once, ro.sampled_agreement(Fixed(4), 'activations', pairs=2)) and ((once * 4) % 1 == 0).all()  # seeded; a share of 4 draws
    assert not torch.equal(once, ro.sampled_agreement(Fixed(4), 'activations', pairs=2, seed=1))


def test_allocations_respect_the_budget_and_the_statistical_one_keeps_most():
    net, images = toy_classifier()
    est = Estimator(net, (3, 12, 12), cache=False)
    cal = calibrate(est, images(100, 3))
    ro_cal, ro_eval = (Roundoff(est, images(n, seed), draws=0, calibration=cal, fold_batchnorm=True) for n, seed in ((200, 3), (300, 2)))
    budget = 5
    sens = {m: weight_sensitivities(ro_cal, m, per_channel=True, samples=4) for m in ALLOCATIONS}
    allocs = {m: allocate_bits(s, budget, lo=2, hi=8) for m, s in sens.items()}
    n = sens['uniform'].set_index('module').params
    assert allocate_bits(ro_cal, budget, lo=2, hi=8).equals(allocs['statistical'])   # from the analysis itself: statistical by default
    for m, bits in allocs.items():
        assert (bits * n).sum() <= budget * n.sum(), m
    cmp = compare_allocation(ro_eval, allocs)
    assert cmp.loc['statistical', 'measured'] >= cmp.measured.max() - 0.02, cmp   # what it is for, measured on other images
    assert abs(cmp.loc['statistical', 'predicted'] - cmp.loc['statistical', 'measured']) < 0.1, cmp
    assert abs(cmp.loc['statistical', 'linearised'] - cmp.loc['statistical', 'measured']) < 0.1, cmp
    fmt = make_formats('fixed', allocs['statistical'], per_channel=True)
    per_draw = torch.stack([ro_eval.keeps(ro_eval.draw(fmt, 'weights', i, s)).double().mean() for i in range(4) for s in (1., -1.)])
    assert abs(cmp.loc['statistical', 'spread'] - per_draw.std().item()) < 1e-12 and abs(cmp.loc['statistical', 'predicted'] - per_draw.mean().item()) < 1e-12
    err, _ = ro_eval.measure(fmt, 'weights')
    assert (err <= ro_eval.bound(fmt, 'weights')).all()                      # the error it causes is bounded, not just the bound lowered
    with rounded_weights(ro_eval.rounded, fmt, ro_eval.folds, biases=False):  # and it is the error of those widths
        assert not torch.equal(est.gm(ro_eval.x), ro_eval.logits)


def test_study_runs_resumes_and_refuses_another_configuration(tmp_path):
    net, images = toy_classifier()
    est = Estimator(net, (3, 12, 12), cache=False)
    args = (est, images(20, 2), torch.full((20,), -1), images(24, 3), torch.full((24,), -1), tmp_path)
    kw = dict(widths=range(4, 7), budgets=(5,), hessian_images=4, hessian_samples=2, batch_size=10, progress=False)
    tables = bitwidth_study(*args, **kw)
    assert len(list((tmp_path/'rows').glob('*.csv.gz'))) == 2 and set(tables['curves'].bits) == {4, 5, 6}
    assert len(tables['comparison']) == 2 * len(ALLOCATIONS)
    rows = tables['rows']
    assert rows.sampled.between(0, 1).all() and ((rows.sampled * 8) % 1 == 0).all()   # a share of 4 antithetic pairs of draws
    assert {'sampled', 'sampled_difference'} <= set(tables['curves']) and 'sampled' in tables['widths'] and 'sampled' in tables['comparison']
    again = bitwidth_study(*args, **kw)
    assert again['curves'].equals(tables['curves'])
    with pytest.raises(ValueError, match='another configuration'): bitwidth_study(*args, **{**kw, 'widths': range(4, 6)})


def test_bitwidth_makes_no_tensor_off_the_data_device():
    "Every tensor bitwidth creates must take the device of the data it meets: with the default device 'meta', one that does not clashes."
    net, x = residual_net(), torch.rand(2, 3, 12, 12)
    est = Estimator(net, (3, 12, 12), cache=False)
    cal = calibrate(est, torch.rand(4, 3, 12, 12))
    with torch.device('meta'):
        for c in (None, cal):
            ro = Roundoff(est, x, draws=2, calibration=c, fold_batchnorm=c is not None)
            for fmt in ('fixed', 'float'):
                predict_bits(ro, x, fmt, 'both', kind='estimate'), predict_bits(ro, x, fmt, 'both', bits=range(2, 12))
                measure_bits(ro, x, fmt, 'both', bits=range(4, 6))
            predict_agreement(ro, x, 'fixed', 'both', [4, 8]), measure_agreement(ro, x, 'fixed', 'both', 8), ro.estimate(Fixed(8), 'both')
        sens = weight_sensitivities(ro, 'statistical', per_channel=True, act=Fixed(8))
        compare_allocation(ro, {'s': allocate_bits(sens, 5, hi=8)}, act_bits=8)
        for method in ('hessian', 'bound'): allocate_bits(weight_sensitivities(ro, method, per_channel=True, samples=2), 5, hi=8)
        study_split(10, 3)


def test_bad_arguments():
    net, x = residual_net(), torch.rand(2, 3, 12, 12)
    with pytest.raises(ValueError, match="'fixed' or 'float'"): predict_bits(net, x, fmt='int')
    with pytest.raises(ValueError, match='weights, activations, both'): measure_bits(net, x, target='everything')
    with pytest.raises(ValueError, match='bound, estimate'): predict_bits(net, x, kind='exact')
    with pytest.raises(ValueError, match='exponent bits must be an integer from 2 to 11, got 0'): predict_bits(net, x, 'float', exp_bits=0)
    with pytest.raises(ValueError, match='fixed-point bits must be an integer from 2 to 256, got 1'): predict_agreement(net, x, bits=1)
    with pytest.raises(ValueError, match="'max' or 'percentile'"): calibrate(Estimator(net, (3, 12, 12), cache=False), x, 'kl')
    with pytest.raises(ValueError, match='Widths'): Roundoff(Estimator(net, (3, 12, 12), cache=False), x).measure({'0': Fixed(4)}, 'both')
    with pytest.raises(ValueError, match='unknown allocation method'): allocate_bits(weight_sensitivities(Roundoff(Estimator(net, (3, 12, 12), cache=False), x)), 4, method='greedy')


def agreement_check():
    "The module scripts/agreement_check.py (imported from the scripts folder, as the script imports its neighbours)."
    import pathlib, sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]/'scripts'))
    try: import agreement_check
    finally: sys.path.pop(0)
    return agreement_check

def test_agreement_check_names_the_study_settings_and_summarises_its_rows(tmp_path):
    "scripts/agreement_check.py: each of its settings has the study's name and format, and its summary is the agreement of the rows and of each draw."
    import pandas as pd
    from condbook.bitwidth import STUDY_FLOATS, STUDY_SETTINGS
    m = agreement_check()
    check_format, study_setting, summarise = m.check_format, m.study_setting, m.summarise
    for setting, target, per_channel, calibration in STUDY_SETTINGS:
        assert study_setting('fixed', target, not per_channel, calibration or 'max') == setting
        w, a = check_format('fixed', target, 5, per_channel)
        assert (w is None) == (target == 'activations') and (a is None) == (target == 'weights')
        assert w is None or w == Fixed(5, per_channel)
        assert a is None or a == Fixed(5)
    for name in STUDY_FLOATS:
        assert study_setting(name, 'both') == name and check_format(name, 'both', 0) is FLOAT_FORMATS[name]
    assert study_setting('fixed', 'both', per_tensor=True) is None  # the study has no such setting: the script refuses it
    assert tuple(FLOAT_FORMATS[n].bits for n in ('fp8_e4m3', 'fp8_e5m2', 'bf16', 'fp16')) == (8, 8, 16, 16)  # a float run's rows: its bits
    # two batches of rows (photos 0 and 1, then photo 2) at 4 and 5 bits, with two draws each
    cols = ['image', 'bits', 'sampled', 'measured', 'draw_0', 'draw_1']
    pd.DataFrame([(0, 4, .5, 1, 1, 0), (1, 4, 1, 1, 1, 1), (0, 5, 0, 0, 0, 0), (1, 5, .5, 0, 1, 0)], columns=cols).to_csv(tmp_path/'0000.csv.gz', index=False)
    pd.DataFrame([(2, 4, 1, 1, 1, 1), (2, 5, 0, 0, 0, 1)], columns=cols).to_csv(tmp_path/'0002.csv.gz', index=False)
    s = summarise(tmp_path, 'both, max', 'both')
    assert list(s.photos) == [3, 3] and set(s.setting) == {'both, max'} and set(s.target) == {'both'}
    assert list(s.sampled) == pytest.approx([100 * 2.5 / 3, 100 * .5 / 3], abs=0.01)
    assert list(s.measured) == [100, 0] and list(s['sampled - measured']) == pytest.approx([100 * 2.5 / 3 - 100, 100 * .5 / 3], abs=0.02)
    assert list(s['draw min']) == pytest.approx([100 * 2 / 3, 100 / 3], abs=0.01)  # draw 1 keeps 2 of 3 at 4 bits; each draw keeps 1 of 3 at 5
    assert list(s['draw max']) == pytest.approx([100, 100 / 3], abs=0.01) and s['draw sd'].iloc[1] == 0
    # per photo p(1 − p)·k/(k − 1): at 4 bits photo 0 splits its two draws (0.5), at 5 bits photos 1 and 2 do: the draws' sd of 0 is chance
    assert list(s['photo sd']) == pytest.approx([100 * .5 ** .5 / 3, 100 * 1 / 3], abs=0.01)

def test_agreement_check_adds_later_seeds_draws_to_a_run(tmp_path):
    "scripts/agreement_check.py --seed: the draws of later seeds join the rows of the first run, in the sampled prediction, the draws' spread and its standard error."
    import pandas as pd
    m = agreement_check()
    seed_folders, summarise = m.seed_folders, m.summarise
    base, extra = tmp_path/'both-2-draws', tmp_path/'both-draws-seed2'
    base.mkdir(); extra.mkdir(); (tmp_path/'weights-draws-seed2').mkdir()  # another target's draws: not this run's
    # photos 0-3 at 4 and 5 bits; seeds 0 and 1 (draws 0-3) measured with the run, seed 2 (draws 4, 5) added at 4 bits alone
    first = pd.DataFrame({'image': [0, 1, 2, 3] * 2, 'target': 'both', 'bits': [4] * 4 + [5] * 4, 'draw_0': [1, 1, 0, 0, 1, 1, 1, 1],
                          'draw_1': [1, 0, 0, 0, 1, 1, 1, 0], 'draw_2': [1, 1, 1, 0, 0, 1, 1, 1], 'draw_3': [1, 1, 1, 1, 1, 1, 0, 0],
                          'measured': [1, 0, 0, 0, 1, 1, 1, 1]})
    first.assign(sampled=first.filter(like='draw_').mean(axis=1)).to_csv(base/'0000.csv.gz', index=False)
    later = pd.DataFrame({'image': [3, 2, 1, 0], 'target': 'both', 'bits': 4, 'draw_4': [1, 1, 1, 1], 'draw_5': [0, 1, 1, 1]})
    later.assign(sampled=0.).to_csv(extra/'0000.csv.gz', index=False)  # its own mean is not used
    running = tmp_path/'both-draws-seed3'  # a run still going: 2 of the 4 photos so far, which count nowhere
    running.mkdir(); pd.DataFrame({'image': [0, 1], 'target': 'both', 'bits': 4, 'sampled': 0., 'draw_6': 0, 'draw_7': 0}).to_csv(running/'0000.csv.gz', index=False)
    assert seed_folders(base) == [extra, running] and seed_folders(extra) == []
    s = summarise(base, 'both, max', 'both')
    assert list(s.photos) == [4, 4] and list(s.measured) == [25, 100]
    # 4 bits: the six draws keep 2, 1, 3, 4, 4 and 3 of 4 photos (pairs 37.5, 87.5, 87.5); 5 bits: seeds 0 and 1 alone, 4, 3, 3, 2 (pairs 87.5, 62.5)
    assert list(s.sampled) == pytest.approx([100 * 17 / 24, 75], abs=0.01) and list(s['draw min']) == [25, 50] and list(s['draw max']) == [100, 100]
    assert list(s['sampled se']) == pytest.approx([pd.Series([37.5, 87.5, 87.5]).std() / 3 ** .5, 12.5], abs=0.01)
    assert s.draw_5.iloc[0] == 75 and pd.isna(s.draw_5.iloc[1]) and s.draw_6.isna().all()  # each draw's agreement, where it ran for every photo
    # at 5 bits each photo has seeds 0 and 1 alone: p = .75, 1, .75, .5 from 4 draws each, p(1 − p)·4/3
    assert s['photo sd'].iloc[1] == pytest.approx(100 * ((.1875 + .1875 + .25) * 4 / 3) ** .5 / 4, abs=0.01)


def test_batchnorm_folding_is_explicit_and_calibration_does_not_imply_it():
    "issue 38: `calibration` used to switch BatchNorm folding on for the weights; now only `fold_batchnorm` does."
    net, x = residual_net(), torch.rand(4, 3, 12, 12)
    est = Estimator(net, (3, 12, 12), cache=False)
    cal = calibrate(est, torch.rand(8, 3, 12, 12))
    plain, cal_only = Roundoff(est, x, draws=0), Roundoff(est, x, draws=0, calibration=cal)
    folded = Roundoff(est, x, draws=0, calibration=cal, fold_batchnorm=True)
    names = lambda ro: {k: r.names for k, r in ro.rounded.items()}
    assert names(cal_only) == names(plain) and cal_only.folds == {} and not cal_only.deployed
    assert any('bias' in n for n in names(plain).values()) and all(n == ('weight',) for n in names(folded).values())
    assert sorted(folded.folds) == ['2.conv1', '2.conv2']       # the two convolutions followed by a BatchNorm
    for fmt in (Fixed(4), Fixed(6, per_channel=True)):
        assert torch.equal(cal_only.measure(fmt, 'weights')[0], plain.measure(fmt, 'weights')[0])
        assert not torch.allclose(folded.measure(fmt, 'weights')[0], plain.measure(fmt, 'weights')[0], rtol=1e-3)
    assert measure_agreement(folded, x, 'fixed', 'weights', 4) == measure_agreement(net, x, 'fixed', 'weights', 4, calibration=cal, est=est,
                                                                                    fold_batchnorm=True)
    with pytest.raises(ValueError, match='fold_batchnorm=True'): measure_bits(folded, x, fold_batchnorm=False)
    with pytest.raises(ValueError, match='former name'): Roundoff(est, x, deployed=False, fold_batchnorm=True)
    assert Roundoff(est, x, draws=0, deployed=True).deployed                # the former name still works


def test_backend_presets_match_torch_ao_fake_quantization():
    "issue 38: condbook's emulation under a preset gives the logits of torch.ao's own FakeQuantize modules (conv-BN-ReLU x2, linear)."
    import dataclasses, warnings
    from condbook.backends import PRESETS, QuantSpec, observe, spec_agreement, spec_logits, torch_fake_quant
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16),
                        nn.ReLU(), nn.Flatten(), nn.Linear(16 * 7 * 7, 10)).eval()
    with torch.no_grad():
        for m in cnn.modules():
            if isinstance(m, nn.BatchNorm2d): m.running_var.uniform_(0.5, 2); m.weight.uniform_(0.5, 1.5); m.bias.normal_(); m.running_mean.normal_()
    g = torch.Generator().manual_seed(1)
    x_cal, x = torch.rand(32, 3, 16, 16, generator=g), torch.rand(48, 3, 16, 16, generator=g)
    est = Estimator(cnn, (3, 16, 16), cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for name, bits in (('fx_x86', 8), ('fx_qnnpack', 6), ('xnnpack', 4)):
            spec = PRESETS[name]
            with torch.no_grad(): ref = torch_fake_quant(cnn, x_cal, spec, bits)(x)
            ours = spec_logits(est, x, spec, bits, observe(est, x_cal, spec))
            assert (ours - ref).abs().max() < 1e-5 and torch.equal(ours.argmax(1), ref.argmax(1)), name
            changes = [dict(reduce_range=not spec.reduce_range), dict(weight_range={'full': 'narrow', 'narrow': 'full'}[spec.weight_range]),
                       dict(per_channel=not spec.per_channel), dict(placement='before')]
            changes += [] if spec.per_channel else [dict(fold_batchnorm=False)]  # per channel, folding is exact: each scale follows k_c
            for change in changes:
                other = dataclasses.replace(spec, **change)
                assert (spec_logits(est, x, other, bits, observe(est, x_cal, other)) - ref).abs().max() > 1e-3, (name, change)
    assert 0 <= spec_agreement(est, x, PRESETS['xnnpack'], 3, observe(est, x_cal, PRESETS['xnnpack'])) < 1
    with pytest.raises(ValueError, match="unknown activations 'asymmetric'"): QuantSpec(activations='asymmetric')


def test_prediction_computes_only_the_sensitivities_it_reads():
    "issue 38: a prediction on its own analysis computes the families of sensitivities its format reads alone; the same numbers."
    from condbook.bitwidth import VarianceWeights
    net, images = toy_classifier()
    est = Estimator(net, (3, 12, 12), cache=False)
    x, cal = images(64, 2), calibrate(est, images(32, 3))
    for target in TARGETS:
        everything = Roundoff(est, x, draws=0, calibration=cal, fold_batchnorm=True)  # families None: all of them
        p_all = predict_agreement(everything, x, 'fixed', target, [4, 6, 8], pairs=0)
        p_own = predict_agreement(net, x, 'fixed', target, [4, 6, 8], calibration=cal, est=est, pairs=0, fold_batchnorm=True)
        assert torch.equal(p_all, p_own), target
    ro = Roundoff(est, x, draws=0, calibration=cal)
    assert ro.needed_families(Fixed(8, True), 'both') == {('weights', ('fixed', True)), ('activations', 'static')}
    assert ro.needed_families(Float(7), 'both') == {('weights', ('float', 8)), ('activations', ('float', 8))}
    assert ro.needed_families({'0': Fixed(4), '5': Float(3, 5)}, 'weights') == {('weights', ('fixed', False)), ('weights', ('float', 5))}
    w, g = torch.randn(6, 4, 3, 3), torch.randn(5, 6, 4, 3, 3)
    dense = VarianceWeights(w, 8, False)
    masked = VarianceWeights(w, 8, False); masked.dense = False
    assert dense.dense and all(torch.equal(v, masked(g)[k]) for k, v in dense(g).items())


def test_sensitivity_cache_is_keyed_by_the_families():
    "issue 35: sensitivities computed for some families are not served for others (the cache is keyed by the families)."
    net, images = toy_classifier()
    est = Estimator(net, (3, 12, 12), cache=False)
    x, cal = images(8, 2), calibrate(est, images(16, 3))
    some = {('weights', ('fixed', True)), ('activations', 'static')}
    everything = Roundoff(est, x, draws=0, calibration=cal, fold_batchnorm=True, exp_bits=(5, 8)).sensitivity()
    ro = Roundoff(est, x, draws=0, calibration=cal, fold_batchnorm=True, families=some, exp_bits=(5, 8))
    assert ro.families == some and ro.exp_bits == (5, 8)
    assert set(ro.sensitivity()) == some and set(everything) > some
    ro.families = None  # another set of families: all of them, not the few computed first
    got = ro.sensitivity()
    assert set(got) == set(everything) and all(torch.equal(got[k], everything[k]) for k in everything)
