"(Bad input to the command line: tests/test_bad_input.py.)"
import json, os, subprocess, sys
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


NET = """from torch import nn
def make(): return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 15 * 15, 10))
"""
FORMS = [('mobilenet_v3_small', []), ('timm/test_resnet', []), ('my_net.py:make', ['--mean', '0.5', '--std', '0.25']),
         ('my_pkg.nets:make', [])]  # a torchvision classifier that is not condbook's, timm, a file, a module


@pytest.mark.parametrize('model,more', FORMS, ids=[m for m, _ in FORMS])
def test_report_runs_each_model_form(tmp_path, monkeypatch, capsys, model, more):
    "`condbook report --model` takes a torchvision name, timm/ARCH, FILE.py:FACTORY and MODULE:FACTORY (found in the working folder)."
    if model.startswith('timm/'): pytest.importorskip('timm')
    monkeypatch.chdir(tmp_path)
    (tmp_path/'my_net.py').write_text(NET); (tmp_path/'my_pkg').mkdir(); (tmp_path/'my_pkg'/'nets.py').write_text(NET)
    cli.main(['report', '--model', model, '--weights', 'untrained', '--size', '32', '--limit', '1', '--device', 'cpu', '--out', 'r', *more])
    per_image, config = pd.read_csv(tmp_path/'r'/'per_image.csv'), json.loads((tmp_path/'r'/'config.json').read_text())
    assert len(per_image) == 1 and (per_image.local_condition <= per_image.activation_bound * 1.002).all()
    assert (per_image.activation_bound <= per_image.K).all() and config['model'] == model
    assert (tmp_path/'r'/'summary.md').read_text().startswith(f'# Condition report: {model} (')
    if more: assert (config['mean'], config['std']) == ([0.5], [0.25])


def test_bench_and_experiment_take_a_factory(tmp_path, monkeypatch, capsys):
    "`bench` and `experiment` load a factory too; the experiment records the spec, resumes it, and refuses another normalisation."
    monkeypatch.chdir(tmp_path); (tmp_path/'my_net.py').write_text(NET)
    cli.main(['bench', '--model', 'my_net.py:make', '--size', '32', '--batch', '2', '--device', 'cpu'])
    r = json.loads(capsys.readouterr().out)
    assert r['model'] == "my_net.py:make (the factory's weights)" and r['input'] == [3, 32, 32] and r['lanczos_applications'] > 0
    run = ['experiment', '--model', 'my_net.py:make', '--weights', 'untrained', '--size', '32', '--limit', '1', '--kinds', 'sign',
           '--random-eps', '0.1', '--draws', '2', '--attacks', 'fgsm', '--flip-steps', '0', '--parameter-draws', '0', '--no-bitwidth',
           '--device', 'cpu', '--out', 'e', '--mean', '0.5', '--std', '0.25']
    cli.main(run)
    config = json.loads((tmp_path/'e'/'config.json').read_text())
    assert (config['model'], config['mean'], config['std']) == ('my_net.py:make', [0.5], [0.25])
    rows = (tmp_path/'e').glob('results-*.jsonl')
    before = sum(len(f.read_text().splitlines()) for f in rows)
    cli.main(run)  # the same command resumes: nothing to add
    assert sum(len(f.read_text().splitlines()) for f in (tmp_path/'e').glob('results-*.jsonl')) == before > 0
    with pytest.raises(SystemExit) as e: cli.main(run[:-1] + ['0.3'])
    assert e.value.code == 1 and 'std: [0.25] there, [0.3] now' in capsys.readouterr().err
    (tmp_path/'my_net.py').write_text(NET.replace('4 * 15 * 15, 10', '4 * 15 * 15, 5'))  # another network under the same name
    with pytest.raises(SystemExit) as e: cli.main(run)
    assert e.value.code == 1 and 'the model file of my_net.py:make is not the one the run in e was made with' in capsys.readouterr().err
