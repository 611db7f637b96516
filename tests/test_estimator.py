import math, warnings
import pytest, torch, torchvision
from torch import nn
from condbook.core import dense_local_condition
from condbook.estimator import Estimator, UnsupportedOperationError, local_condition
from condbook.models import load_model


def tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(36, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()


def test_chain_hierarchy_and_telescoping():
    net, x = tiny(), torch.rand(3, 3, 14, 14, dtype=torch.float64)
    est = Estimator(net, (3, 14, 14), tol=1e-8, local_tol=1e-8, cache=False)
    r = est(x)
    prod = torch.tensor(r.per_layer.groupby('image').kappa.prod().values)
    assert torch.allclose(prod, r.bound, rtol=1e-6)
    ref = dense_local_condition(net, x)
    assert torch.allclose(local_condition(net, x, tol=1e-10), ref, rtol=1e-7)
    assert (ref <= r.activation_bound * (1 + 1e-8)).all() and (r.activation_bound <= r.bound).all()
    d = torch.randn_like(x) * 0.5
    amp = (net(x + d) - net(x)).flatten(1).norm(dim=1) / net(x).flatten(1).norm(dim=1) / (d.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1))
    assert (amp.detach() <= r.bound).all()


def test_parameter_bound_holds_for_a_random_weight_perturbation():
    net, x = tiny(), torch.rand(2, 3, 14, 14, dtype=torch.float64)
    r = Estimator(net, (3, 14, 14), cache=False)(x)
    kappa = torch.tensor(r.parameters.query("layer == '0' and parameter == 'weight'").sort_values('image').kappa.values)
    w = net[0].weight
    d = torch.randn_like(w); d = d / d.norm() * 0.1 * w.norm()
    with torch.no_grad():
        f0 = net(x); w += d; f1 = net(x); w -= d
    assert ((f1 - f0).flatten(1).norm(dim=1) / f0.flatten(1).norm(dim=1) / 0.1 <= kappa).all()


def test_resnet18_graph_with_additions():
    net = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.rand(1, 3, 32, 32)
    est = Estimator(net, (3, 32, 32), cache=False)
    assert not est.is_chain
    r = est(x)
    loc = local_condition(net, x)
    assert loc[0] <= r.activation_bound[0] * 1.002 and r.activation_bound[0] <= r.bound[0]


def test_pretrained_efficientnet_lite0_traces():
    net = load_model('efficientnet_lite0', 'imagenet')
    est = Estimator(net, (3, 64, 64), cache=False)
    x = torch.rand(1, 3, 64, 64)
    r = est(x)
    assert est.lipschitz > 1e30 and math.isfinite(r.bound[0])  # beyond float32's range: bounds are float64
    assert local_condition(net, x)[0] <= r.bound[0]


def test_bad_input_is_named():
    est = Estimator(tiny(), (3, 14, 14), cache=False)
    with pytest.raises(ValueError, match='channels'): est(torch.rand(1, 1, 14, 14))
    with pytest.raises(ValueError, match='built for'): est(torch.rand(1, 3, 15, 14))
    with pytest.raises(ValueError, match='training mode'): Estimator(tiny().train(), (3, 14, 14))
    with pytest.raises(UnsupportedOperationError, match=r"node '_1' .*call_module LPPool2d"):
        Estimator(nn.Sequential(nn.Conv2d(3, 3, 3), nn.LPPool2d(2, 2)).eval(), (3, 8, 8))
    x = torch.rand(2, 3, 14, 14, dtype=torch.float64); x[0, 0, 0, 0] = math.inf
    with pytest.warns(UserWarning, match='0: input has NaN or Inf'):
        r = est(x)
    assert math.isnan(r.bound[0]) and math.isfinite(r.bound[1])


def test_a_users_normalising_wrapper_and_shared_operands():
    "(x − mean)/std with buffers is affine; y + y and cat([y, y]) count both uses (the bound stays above the dense κ)."
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer('mean', torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1))
            self.register_buffer('std', torch.tensor([0.2, 0.3, 0.25]).view(3, 1, 1))
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(2 * 4 * 36, 3)
        def forward(self, x):
            y = torch.relu(self.conv((x - self.mean) / self.std))
            return self.fc(torch.cat([y + y, y], 1).flatten(1))
    torch.manual_seed(0)
    net, x = Wrapped().double().eval(), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    est = Estimator(net, (3, 8, 8), cache=False)
    r = est(x)
    assert [j.kind for j in est.joins] == ['add', 'concatenate'] and [len(j.inputs) for j in est.joins] == [2, 2]
    ref = dense_local_condition(net, x)
    assert (ref <= r.activation_bound * 1.002).all() and (r.activation_bound <= r.bound).all()


def test_tracing_leaves_the_model_as_it_was():
    "Tracing caches nothing in the model: timm's EfficientFormer-V2 keeps attention biases in a dictionary it fills on use."
    pytest.importorskip('timm')
    from condbook.zoo import zoo_model
    model = zoo_model('timm/efficientformerv2_s0', 32, num_classes=10)
    caches = [m.attention_bias_cache for m in model.modules() if hasattr(m, 'attention_bias_cache')]
    assert caches and not any(caches)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(): before = model(x)
    assert any(caches)  # eval-mode forward passes fill the cache
    saved = [dict(c) for c in caches]
    bounds = [Estimator(model, model.input_shape)(x).bound for _ in range(2)]  # a second Estimator on the same model
    torch.testing.assert_close(bounds[0], bounds[1])
    assert all(c.keys() == s.keys() and all(c[k] is s[k] for k in s) for c, s in zip(caches, saved))
    with torch.no_grad(): torch.testing.assert_close(model(x), before)


class _Square(torch.autograd.Function):  # the old style: no setup_context, which torch.func needs
    @staticmethod
    def forward(ctx, x): ctx.save_for_backward(x); return x * x
    @staticmethod
    def backward(ctx, g): x, = ctx.saved_tensors; return 2 * x * g


def test_models_that_cannot_be_measured_say_why():
    "A 1-D output, an input_shape without channels, an autograd.Function torch.func cannot differentiate: one line each."
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 1), nn.Flatten(0)).eval()
    for f in (lambda: Estimator(flat, (3, 2, 2)), lambda: local_condition(flat, torch.rand(2, 3, 2, 2))):
        with pytest.raises(ValueError, match=r'output must be \[batch, classes\].*, got \[\d\]'): f()
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).eval()
    with pytest.raises(ValueError, match=r"input of shape \[1, 8, 8\] .*input_shape is one image's shape"):
        Estimator(conv, (8, 8))
    class Squaring(nn.Module):
        def forward(self, x): return _Square.apply(x)
    custom = nn.Sequential(Squaring(), nn.Flatten(), nn.Linear(12, 3)).eval()
    with pytest.raises(UnsupportedOperationError, match='autograd.Function without setup_context'):
        local_condition(custom, torch.rand(2, 3, 2, 2))


def test_intervals_asked_out_of_graph_order():
    "The walk may ask for a node's interval after every reader has its own (Gemma 4's clipped q, k, v): no error."
    est = Estimator(tiny(), (3, 14, 14), cache=False)
    est._start_intervals()
    nodes = [n for n in est.gm.graph.nodes if n in est._readers and n is not est.input_node]
    est._intervals_until(nodes[-1])  # every node up to the last: the early ones are freed
    est._intervals_until(nodes[0])
    assert nodes[0] not in est._iv and nodes[-1] in est._iv


def test_code_that_reads_sizes_is_traced_at_the_input_shape():
    "A block that pads by its input's width and rebuilds a cache on a size change: traced, batch free, bound above κ."
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head, self.scale = nn.Conv2d(3, 4, 3), nn.Linear(4, 3), None
        def forward(self, x):
            if x.shape[-1] % 4: x = nn.functional.pad(x, (0, 4 - x.shape[-1] % 4))
            y = self.conv(x).relu().flatten(2)
            if self.scale is None or self.scale.shape[-1] != y.shape[-1]: self.scale = torch.rand(y.shape[-1]).double()
            return self.head((y * self.scale).mean(-1).reshape(x.shape[0], -1))
    net, x = Block().double().eval(), torch.rand(3, 3, 9, 9, dtype=torch.float64)
    net(x[:1])
    est = Estimator(net, (3, 9, 9), cache=False)
    assert any(n.target == 'size' for n in est.gm.graph.nodes)  # the batch stays a node
    r = est(x)
    assert (dense_local_condition(net, x) <= r.activation_bound * (1 + 1e-8)).all()
