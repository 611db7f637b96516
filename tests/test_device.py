"Every measurement of the study makes its tensors on the device of the data: under a `meta` default device, a tensor made without an explicit device clashes with the CPU data and fails the test."
import warnings
import pytest, torch, torchvision
from torch import nn
from condbook.estimator import Estimator
from condbook.experiment import QUICK, ExperimentConfig, measure
from condbook.norms import Normalize


def small_classifier():
    "A normalised residual CNN with BatchNorm and max pooling, on 16×16 images: every kind of node the study meets, in seconds."
    torch.manual_seed(0)
    return nn.Sequential(Normalize((.5, .5, .5), (.25, .25, .25)), nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), torchvision.models.resnet.BasicBlock(8, 8), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 10)).eval()


class Ctx:
    "The parts of `condbook.experiment.Context` that `measure` uses, built under the meta default device."
    def __init__(self, cfg, net): self.cfg, self.net, self.est = cfg, net, Estimator(net, (3, cfg.size, cfg.size), cache=False)


def test_every_measurement_on_the_data_device():
    cfg = ExperimentConfig(model='resnet18', weights='untrained', size=16, **{**QUICK, 'flip_steps': 1})  # the config's model is not loaded
    net = small_classifier()  # parameters on the CPU (module constructors use the default device)
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    plan = cfg.measurements()
    assert {m for m, _ in plan} >= {'estimate', 'local_condition', 'parameters', 'bitwidth', 'flip_radius'}
    with torch.device('meta'), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert torch.empty(1).device.type == 'meta'
        ctx = Ctx(cfg, net)
        for m, e in plan:
            rows = measure(ctx, m, e, x, y, seed=0)
            assert len(rows) == 2, (m, e)
    with torch.device('meta'), pytest.raises((RuntimeError, NotImplementedError)):
        torch.rand(2) + x[0, 0, 0, :2]  # the check itself: a tensor made without a device does clash with CPU data
