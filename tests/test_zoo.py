"Every torchvision classifier through every part of condbook: one model of each family at a small input here, every model at its own size with CONDBOOK_ZOO=full."
import math, os, warnings
import pytest, torch
from condbook.data import batches, sample_images
from condbook.zoo import check_row, classifiers, family, smallest_size, tiny_model, zoo_model, zoo_row

FAMILIES = {'alexnet': 'alexnet', 'convnext': 'convnext_tiny', 'densenet': 'densenet121', 'efficientnet': 'efficientnet_b0',
            'googlenet': 'googlenet', 'inception': 'inception_v3', 'maxvit': 'maxvit_t', 'mnasnet': 'mnasnet0_5',
            'mobilenetv2': 'mobilenet_v2', 'mobilenetv3': 'mobilenet_v3_small', 'regnet': 'regnet_y_400mf', 'resnet': 'resnet18',
            'shufflenetv2': 'shufflenet_v2_x0_5', 'squeezenet': 'squeezenet1_1', 'swin_transformer': 'swin_v2_t', 'vgg': 'vgg11_bn',
            'vision_transformer': 'vit_b_32'}
TINY = {'alexnet', 'convnext', 'densenet', 'maxvit', 'swin_transformer', 'vgg', 'vision_transformer'}  # costly even at their smallest input: a small network of the same class


def photo(model):
    return next(batches(sample_images(limit=1), model.transform, batch_size=1))[0]


def test_every_family_has_a_representative():
    assert {family(n) for n in classifiers()} == set(FAMILIES) and all(family(n) == f for f, n in FAMILIES.items())


@pytest.mark.parametrize('fam', sorted(FAMILIES))
def test_family(fam):
    "Every part runs; K ≥ activation-aware ≥ local κ = the dense Jacobian's ≥ random amplification; K ≥ the attack's."
    name = FAMILIES[fam]
    model = tiny_model(name) if fam in TINY else zoo_model(name, smallest_size(name), num_classes=10)
    row = zoo_row(model, photo(model), draws=2, nb_iter=2, dense=True, widths=(4, 8, 16))
    check_row(row)


@pytest.mark.skipif(os.environ.get('CONDBOOK_ZOO') != 'full', reason='every classifier at its own size: hours; set CONDBOOK_ZOO=full')
@pytest.mark.parametrize('name', classifiers())
def test_full_size(name):
    model = zoo_model(name)
    row = zoo_row(model, photo(model))
    check_row(row)


@pytest.mark.parametrize('fam', sorted(FAMILIES))
def test_every_parameter_is_rounded(fam):
    "The bit-width part rounds every parameter the graph reads (attention's, tokens, tables, layer scales too), and its bound holds."
    from condbook.bitwidth import Fixed, Roundoff
    from condbook.estimator import Estimator
    name = FAMILIES[fam]
    model = tiny_model(name) if fam in TINY else zoo_model(name, smallest_size(name), num_classes=10)
    x = photo(model)
    ro = Roundoff(Estimator(model, model.input_shape), x, draws=0)
    params = list(model.parameters())
    with torch.enable_grad(): grads = torch.autograd.grad(model(x).sum(), params, allow_unused=True)
    read = {id(p) for p, g in zip(params, grads) if g is not None}  # what the output depends on (not GoogLeNet's auxiliary heads)
    assert {id(t) for r in ro.rounded.values() for t in r.tensors()} == read
    for fmt in (Fixed(8), {k: Fixed(8) for k in ro.direct} or Fixed(8)):
        measured, _ = ro.measure(fmt, 'weights')
        assert (measured <= ro.bound(fmt, 'weights')).all()


TIMM_SAMPLE = {'efficientnet': 'test_efficientnet', 'vision_transformer': 'test_vit', 'convnext': 'test_convnext',
               'nfnet': 'test_nfnet', 'byobnet': 'test_byobnet',
               'convit': 'convit_tiny'}  # BatchNormAct2d, SDPA, LayerNorm2d, StdConv2d, code reading sizes, ...


@pytest.mark.parametrize('fam', sorted(TIMM_SAMPLE))
def test_timm_family(fam):
    "timm's classes (subclassed layers, attention through SDPA): every part runs and every bound is above κ(x)."
    pytest.importorskip('timm')
    name = 'timm/' + TIMM_SAMPLE[fam]
    assert family(name) == 'timm/' + fam
    model = zoo_model(name, smallest_size(name), num_classes=10)
    row = zoo_row(model, photo(model), draws=2, nb_iter=2, dense=True, widths=(4, 8, 16))
    check_row(row)


def test_timm_subclass_is_traced_into():
    "timm's BatchNormAct2d (a BatchNorm2d subclass with an activation) is bounded by its real operations, not the BatchNorm rule."
    pytest.importorskip('timm')
    from timm.layers import BatchNormAct2d
    from condbook.estimator import Estimator
    from condbook.ops import module_entry
    bn = BatchNormAct2d(4)
    assert isinstance(bn, torch.nn.BatchNorm2d) and module_entry(bn) is None
    model = zoo_model('timm/test_efficientnet', 32, num_classes=10)
    est = Estimator(model, model.input_shape)
    rules = {n.meta['call'].op.name for n in est.gm.graph.nodes if 'call' in n.meta}
    assert 'F.batch_norm' in rules and 'batchnorm' not in rules
