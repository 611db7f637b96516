"(Bad input to the command line: tests/test_bad_input.py.)"
import os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest, torch, torchvision
from PIL import Image
from condbook import cli
from condbook.models import load_model


def run(*args, **env):
    return subprocess.run([sys.executable, '-c', 'from condbook.cli import main; main()', *args], capture_output=True,
                          text=True, env={**os.environ, **env})


@pytest.fixture
def photos(tmp_path):
    d = tmp_path/'imgs'; d.mkdir()
    torch.manual_seed(0)
    for name in ['n01443537_goldfish.JPEG', 'n01440764_tench.JPEG']:
        Image.fromarray((torch.rand(80, 90, 3) * 255).byte().numpy()).save(d/name)
    (d/'n01484850_broken.JPEG').write_bytes(b'junk')
    return d


def test_report_from_a_checkpoint(tmp_path, photos):
    ckpt = tmp_path/'alexnet.pt'
    torch.save(load_model('alexnet', 'untrained').net.state_dict(), ckpt)
    res = run('report', '--model', 'alexnet', '--weights', str(ckpt), '--data', str(photos), '--out', str(tmp_path/'out'), '--device', 'cpu', '--size', '64')
    assert res.returncode == 0, res.stderr
    out = tmp_path/'out'
    per_image = pd.read_csv(out/'per_image.csv')
    assert list(per_image.label) == [0, 1]  # tench, goldfish (sorted file names); the broken file is skipped
    assert (per_image.local_condition <= per_image.activation_bound * 1.002).all() and (per_image.activation_bound <= per_image.K).all()
    for target in ('weights', 'activations'):  # minimal fixed-point bits, estimated and measured
        assert per_image[f'bits_{target}_measured'].between(2, 32).all() and per_image[f'bits_{target}_estimate'].ge(2).all()
    summary = (out/'summary.md').read_text()
    assert 'n01484850_broken.JPEG' in summary and 'layer_kappa.png' in summary and 'minimal safe fixed-point bits' in summary and f'alexnet ({ckpt} weights), 64×64 input' in summary
    assert (out/'layer_kappa.png').stat().st_size > 1000 and (out/'condition.png').stat().st_size > 1000


def test_missing_pretrained_weights_exit_2(monkeypatch, capsys):
    def offline(name, weights=None):
        if weights is not None: raise OSError('no network')
        return torchvision.models.alexnet()
    monkeypatch.setattr(torchvision.models, 'get_model', offline)
    with pytest.raises(SystemExit) as e: cli.main(['report', '--model', 'alexnet', '--weights', 'imagenet'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--weights untrained' in err[0] and '--weights PATH' in err[0]
