"""Bad input, tried as a new user and a tester would (issue 19): every case ends in a clear one-line error that names the input
and says what is expected, or in the correct result; never a traceback, a hang or a silently wrong number. The odd files are made
here; runs use ResNet-18 at 8×8 with a small plan (its layer constants are computed once per session)."""
import errno, hashlib, json, math, os, re, shutil, struct, sys, warnings, zlib
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, torchvision
from PIL import Image
from condbook.cli import main
from condbook.data import SkippedImage, image_folder
from condbook.experiment import (ExperimentConfig, ResultsWarning, all_rows, complete_rows, load_results, migrate_results, read_manifest,
                                 run_experiment)
from condbook.models import MIN_SIZE, _network, load_model, pixel_transform

TQDM = re.compile(r'\d+%\||\d+/\d+ \[|it/s|s/it')  # progress bars share stderr; they are not errors
TINY = dict(model='resnet18', weights='untrained', size=8, kinds=('sign',), random_eps=(0.1,), draws=2, attacks=('fgsm',), flip_steps=0,
            parameter_draws=0, bitwidth=False, batch_size=2)  # the same run as TINY_CLI
TINY_CLI = ['--model', 'resnet18', '--weights', 'untrained', '--size', '8', '--kinds', 'sign', '--random-eps', '0.1', '--draws', '2',
            '--attacks', 'fgsm', '--flip-steps', '0', '--parameter-draws', '0', '--no-bitwidth', '--batch-size', '2', '--device', 'cpu']


def condbook(capsys, *argv, code=None):
    "Run `condbook *argv` in this process: (exit status, stdout, stderr lines that are not progress bars)."
    try: main([str(a) for a in argv]); status = 0
    except SystemExit as e: status = e.code
    out, err = capsys.readouterr()
    lines = [l for l in err.splitlines() if l.strip() and not TQDM.search(l)]
    assert 'Traceback' not in err, err
    if code is not None: assert status == code, (status, err)
    return status, out, lines


def one_line_error(capsys, *argv, code=1):
    "The one error line `condbook *argv` ends in, checked: status `code`, no traceback, nothing else said but what a run found ('condbook: …')."
    _, _, lines = condbook(capsys, *argv, code=code)
    errors = [l for l in lines if ': error: ' in l]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert all(l.startswith('condbook: ') for l in lines[:-1]), lines  # what a run found, files it skipped
    return errors[0]


def photo(path, seed=0, size=(70, 80)):
    "A random-pixel RGB JPEG at `path`."
    g = torch.Generator().manual_seed(seed)
    Image.fromarray((torch.rand(*size, 3, generator=g) * 255).byte().numpy()).save(path)
    return path


def png_header(w, h):
    "A PNG announcing w×h 1-bit pixels without pixel data: enough for PIL to read its size."
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 1, 0, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b'')


@pytest.fixture(scope='module')
def one_photo(tmp_path_factory):
    d = tmp_path_factory.mktemp('one')
    photo(d/'n01443537_goldfish.JPEG')
    return d


# ---------------------------------------------------------------------------------------------------------------------------
# Options: at and beyond their limits; refused when parsed (status 2) or when checked against each other (status 1), before
# any model is loaded or file written.
OPTIONS = [
    (['report', '--limit', '-1'], 2, "argument --limit: expected an integer ≥ 1, got '-1'"),
    (['report', '--limit', '0'], 2, "argument --limit: expected an integer ≥ 1, got '0'"),
    (['report', '--limit', 'all'], 2, "argument --limit: expected an integer ≥ 1, got 'all'"),
    (['report', '--limit', '2.5'], 2, "argument --limit: expected an integer ≥ 1, got '2.5'"),
    (['report', '--size', '0'], 2, "argument --size: expected an integer in 1..1024, got '0'"),
    (['report', '--size', '-5'], 2, "argument --size: expected an integer in 1..1024, got '-5'"),
    (['report', '--size', '1025'], 2, "argument --size: expected an integer in 1..1024, got '1025'"),
    (['experiment', '--size', '100000'], 2, "argument --size: expected an integer in 1..1024, got '100000'"),
    (['report', '--data', ''], 1, "data: expected a folder, got '' (an empty path)"),
    (['report', '--out', ''], 1, "--out: expected a folder, got '' (an empty path)"),
    (['report', '--weights', ''], 1, "weights: expected a file, got '' (an empty path)"),
    (['experiment', '--data', ''], 1, "data: expected a folder, got '' (an empty path); leave it out for the scikit-image photographs"),
    (['experiment', '--out', ''], 1, "--out: expected a folder, got '' (an empty path)"),
    (['experiment', '--labels', 'labels.txt'], 1, 'labels: a labels file names the classes of an image folder: give --data too'),
    (['report', '--labels', 'labels.txt'], 1, 'labels: a labels file names the classes of an image folder: give --data too'),
    (['report', '--data', '.', '--labels', '/no/such/labels.txt'], 1, 'labels file /no/such/labels.txt does not exist'),
    (['experiment', '--random-eps', '1e30'], 2, "argument --random-eps: expected a number in (0, 1], got '1e30'"),
    (['experiment', '--random-eps', '1.5'], 2, "argument --random-eps: expected a number in (0, 1], got '1.5'"),
    (['experiment', '--parameter-eps', '1e30'], 2, "argument --parameter-eps: expected a number in (0, 1], got '1e30'"),
    (['experiment', '--parameter-eps', 'nan'], 2, "argument --parameter-eps: expected a number in (0, 1], got 'nan'"),
    (['report', '--size', '16', '--model', 'alexnet'], 1, 'size 16: alexnet needs an input of at least 63×63 pixels'),
    (['report', '--size', '62', '--model', 'alexnet'], 1, 'alexnet needs an input of at least 63×63 pixels'),
    (['report', '--size', '31', '--model', 'vgg19'], 1, 'vgg19 needs an input of at least 32×32 pixels'),
    (['report', '--size', '16'], 1, 'efficientnet_lite0 needs an input of at least 32×32 pixels (smallest sizes: alexnet 63, vgg19 32, resnet18 1'),
    (['report', '--batch-size', '0'], 2, "argument --batch-size: expected an integer ≥ 1, got '0'"),
    (['report', '--tol', '0'], 2, "argument --tol: expected a number in (0, 1), got '0'"),
    (['report', '--tol', 'nan'], 2, "argument --tol: expected a number in (0, 1), got 'nan'"),
    (['report', '--dtype', 'float16'], 2, "argument --dtype: expected one of float32, float64, got 'float16'"),
    (['report', '--model', 'lenet'], 2, "argument --model: unknown model 'lenet' (did you mean alexnet"),
    (['report', '--model', 'qqq'], 2, "argument --model: unknown model 'qqq': expected condbook's or a torchvision classifier's name, "
                                      "timm/ARCH, FILE.py:FACTORY or MODULE:FACTORY"),
    (['report', '--model', 'resnet5'], 2, "argument --model: unknown model 'resnet5' (did you mean resnet50"),
    (['bench', '--model', 'nets.py:'], 2, "argument --model: model 'nets.py:': expected FILE.py:FACTORY or MODULE:FACTORY"),
    (['report', '--mean', '0.5', '0.4'], 1, 'mean: expected one or three numbers (a number), got 2'),
    (['report', '--device', 'gpu'], 1, "device 'gpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (['report', '--device', 'cuda:99'], 1, "device 'cuda:99'"),
    (['report', '--limt', '2'], 2, 'unrecognized arguments: --limt 2'),
    (['experiment', '--draws', '0'], 2, "argument --draws: expected an integer ≥ 1, got '0'"),
    (['experiment', '--batch-size', '0'], 2, "argument --batch-size: expected an integer ≥ 1, got '0'"),
    (['experiment', '--nb-iter', '0'], 2, "argument --nb-iter: expected an integer ≥ 1, got '0'"),
    (['experiment', '--cw-iterations', '0'], 2, "argument --cw-iterations: expected an integer ≥ 1, got '0'"),
    (['experiment', '--cw-search-steps', '0'], 2, "argument --cw-search-steps: expected an integer ≥ 1, got '0'"),
    (['experiment', '--flip-steps', '-1'], 2, "argument --flip-steps: expected an integer ≥ 0, got '-1'"),
    (['experiment', '--parameter-draws', '-1'], 2, "argument --parameter-draws: expected an integer ≥ 0, got '-1'"),
    (['experiment', '--random-eps', '0'], 2, "argument --random-eps: expected a number in (0, 1], got '0'"),
    (['experiment', '--random-eps=-1e-3'], 2, "argument --random-eps: expected a number in (0, 1], got '-1e-3'"),
    (['experiment', '--random-eps', '-0.001'], 2, "argument --random-eps: expected a number in (0, 1], got '-0.001'"),
    (['experiment', '--random-eps', 'inf'], 2, "argument --random-eps: expected a number in (0, 1], got 'inf'"),
    (['experiment', '--random-eps', '0.1', '0.1'], 1, 'random_eps: [0.1] given more than once'),
    (['experiment', '--random-eps'], 2, 'argument --random-eps: expected at least one argument'),
    (['experiment', '--kinds', 'salt'], 2, "argument --kinds: expected one of gaussian, uniform, sign, got 'salt'"),
    (['experiment', '--attacks', 'deepfool'], 2, "argument --attacks: expected one of fgsm, linf_pgd, l2_pgd, cw_l2, l2_output, got 'deepfool'"),
    (['experiment', '--flip-eps-max', '0'], 2, "argument --flip-eps-max: expected a number > 0, got '0'"),
    (['experiment', '--flip-eps-max', '1e30'], 1, 'flip_eps_max: 1e+30 is beyond the diameter 388 of the 224×224 input box'),
    (['experiment', '--parameter-eps', '-1'], 2, "argument --parameter-eps: expected a number in (0, 1], got '-1'"),
    (['experiment', '--seed', '-1'], 2, "argument --seed: expected an integer in 0..4294967295, got '-1'"),
    (['experiment', '--seed', str(2**40)], 2, f"argument --seed: expected an integer in 0..4294967295, got '{2**40}'"),
    (['experiment', '--rank', '-1'], 2, "argument --rank: expected an integer ≥ 0, got '-1'"),
    (['experiment', '--world-size', '0'], 2, "argument --world-size: expected an integer ≥ 1, got '0'"),
    (['experiment', '--rank', '2', '--world-size', '2'], 1, 'rank 2 is not in 0..1'),
    (['experiment', '--limit', '0'], 2, "argument --limit: expected an integer ≥ 1, got '0'"),
    (['experiment', '--model', 'alexnet', '--size', '16'], 1, 'size 16: alexnet needs an input of at least 63×63 pixels'),
    (['experiment', '--device', 'gpu'], 1, "device 'gpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (['bench', '--batch', '0'], 2, "argument --batch: expected an integer ≥ 1, got '0'"),
    (['bench', '--size', '0'], 2, "argument --size: expected an integer in 1..1024, got '0'"),
    (['bench', '--size', '31'], 1, 'vgg19 needs an input of at least 32×32 pixels'),
    (['bench', '--power-cap', '0'], 2, "argument --power-cap: expected an integer ≥ 1, got '0'"),
    (['bench', '--local-images', '0'], 2, "argument --local-images: expected an integer ≥ 1, got '0'"),
    (['bench', '--tol', '1'], 2, "argument --tol: expected a number in (0, 1), got '1'"),
    (['summarize', 'somewhere', '--limit', '0'], 2, "argument --limit: expected an integer ≥ 1, got '0'"),
    (['summarize'], 2, 'the following arguments are required: out'),
    (['compile'], 2, "argument COMMAND: invalid choice: 'compile'"),
    ([], 2, 'the following arguments are required: COMMAND'),
]
if not torch.cuda.is_available():
    OPTIONS += [(['report', '--device', 'cuda'], 1, "device 'cuda': torch finds no CUDA GPU on this machine; use 'cpu' or 'auto'"),
                (['experiment', '--device', 'cuda'], 1, "device 'cuda': torch finds no CUDA GPU on this machine")]


@pytest.mark.parametrize('argv,code,says', OPTIONS, ids=[' '.join(a) or 'nothing' for a, _, _ in OPTIONS])
def test_option(capsys, tmp_path, argv, code, says):
    out = [] if not argv or argv[0] not in ('report', 'experiment') or '--out' in argv else ['--out', tmp_path/'out']
    line = one_line_error(capsys, *argv, *out, code=code)
    assert line.startswith(f"condbook{' ' + argv[0] if argv and argv[0] != 'compile' else ''}: error: ") and says in line, line
    assert not (tmp_path/'out').exists(), 'a refused command wrote its output folder'


# ---------------------------------------------------------------------------------------------------------------------------
# Paths and files that are not what they should be.
def _config(run, **changes):
    (run/'config.json').write_text(json.dumps({'model': 'resnet18', 'weights': 'untrained', 'size': 8} | changes))


def _results(run, text):
    run.mkdir(exist_ok=True); _config(run)
    (run/'results-0-of-1.jsonl').write_bytes(text if isinstance(text, bytes) else text.encode())


PATHS = {
    'data folder missing': (lambda d: ['report', '--data', d/'nope'], 'image folder {d}/nope does not exist'),
    'data is a file': (lambda d: ['report', '--data', photo(d/'x.png')], 'is a file, not a folder'),
    'data folder empty': (lambda d: ['report', '--data', d/'e', (d/'e').mkdir()][:3], 'no image files (.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp) in'),
    'data holds no images': (lambda d: ['report', '--data', d, (d/'a.txt').write_text('x'), (d/'b.csv').write_text('y')][:3], 'no image files'),
    'data holds only hidden files': (lambda d: ['report', '--data', d, photo(d/'.hidden.png'), (d/'._x.JPEG').write_bytes(b'\0')][:3], 'no image files'),
    'data mixes files and class folders': (lambda d: ['report', '--data', d, photo(d/'a.png'), (d/'cls').mkdir(), photo(d/'cls'/'b.png')][:3],
                                           'holds both image files (a.png, …) and class subfolders of images (cls/, …)'),
    'devkit without validation images': (lambda d: ['report', '--data', d, (d/'meta.bin').write_bytes(b'junk')][:3],
                                         'holds the ImageNet devkit, but torchvision cannot read its validation set'),
    'weights file missing': (lambda d: ['report', '--weights', d/'nope.pt'], "is none of these"),
    'weights is a folder': (lambda d: ['report', '--weights', d], '(it is a folder)'),
    'report out is a file': (lambda d: ['report', '--out', photo(d/'out.png')], 'is a file, not a folder (--out takes a folder)'),
    'experiment out is a file': (lambda d: ['experiment', *TINY_CLI, '--out', photo(d/'out.png')], 'is a file, not a folder (--out takes a folder)'),
    'summarize: no such folder': (lambda d: ['summarize', d/'nope'], 'experiment folder {d}/nope does not exist'),
    'summarize: a file': (lambda d: ['summarize', photo(d/'x.png')], 'is a file, not a folder'),
    'summarize: folder without results': (lambda d: ['summarize', d], 'no results in {d} (no results-*.jsonl: is it the --out of condbook experiment?)'),
    'summarize: empty results file': (lambda d: ['summarize', d, _results(d, '')][:2], 'no results in {d}: its results files hold no rows yet'),
    'summarize: results of another format': (lambda d: ['summarize', d, _results(d, '{"name": "x", "value": 1}\n{"name": "y"}\n')][:2],
                                             'results-0-of-1.jsonl is not a results file of condbook experiment: none of its 2 lines is a row'),
    'summarize: binary junk results': (lambda d: ['summarize', d, _results(d, os.urandom(300).replace(b'\n', b' ') + b'\n')][:2],
                                       'is not a results file of condbook experiment'),
    'summarize: rows keyed by index': (lambda d: ['summarize', d, _results(d, '{"image": 0, "measurement": "estimate", "eps": null, "path": "/x/a.png"}\n')][:2],
                                       'holds rows keyed by image index (condbook before rows were keyed by file): convert them once with condbook.experiment.migrate_results'),
    'summarize: no config.json': (lambda d: ['summarize', d, _results(d, '{"file": "a.png", "sha": "1", "measurement": "local_condition", "eps": null, "local_condition": 2.5}\n'),
                                             (d/'config.json').unlink()][:2], 'holds no config.json'),
    'summarize: config.json not JSON': (lambda d: ['summarize', d, _results(d, '{"file": "a.png", "sha": "1", "measurement": "local_condition", "eps": null, "local_condition": 2.5}\n'),
                                                   (d/'config.json').write_text('{"model": ')][:2], "config.json is not valid JSON"),
    'summarize: config.json a list': (lambda d: ['summarize', d, _results(d, '{"file": "a.png", "sha": "1", "measurement": "local_condition", "eps": null, "local_condition": 2.5}\n'),
                                                 (d/'config.json').write_text('[1, 2]')][:2], 'config.json holds a JSON list'),
    'summarize: config.json with a bad setting': (lambda d: ['summarize', d, _results(d, '{"file": "a.png", "sha": "1", "measurement": "local_condition", "eps": null, "local_condition": 2.5}\n'),
                                                             _config(d, draws=0)][:2], 'config.json: draws: expected an integer ≥ 1, got 0'),
    'summarize: files.json corrupt': (lambda d: ['summarize', d, _results(d, '{"file": "a.png", "sha": "1", "measurement": "local_condition", "eps": null, "local_condition": 2.5}\n'),
                                                 (d/'files.json').write_text('{"files": 3}')][:2], "files.json does not hold a list of [file, sha] pairs"),
    'summarize: nothing complete yet': (lambda d: ['summarize', d, _results(d, '{"file": "a.png", "sha": "1", "measurement": "local_condition", "eps": null, "local_condition": 2.5}\n')][:2],
                                        'has every measurement yet (1 in flight)'),
}


@pytest.mark.parametrize('case', list(PATHS))
def test_path(capsys, tmp_path, case):
    make, says = PATHS[case]
    line = one_line_error(capsys, *make(tmp_path))
    assert says.format(d=tmp_path) in line, line


# ---------------------------------------------------------------------------------------------------------------------------
# Checkpoints: say what the file is and what was expected; never advise unpickling it.
@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    "Odd checkpoint files, for ResNet-18 (the smallest torchvision network of `MODELS`)."
    d = tmp_path_factory.mktemp('ckpt')
    resnet = _network('resnet18').state_dict()
    (d/'text.pt').write_text('hello, I am a text file\n'); (d/'random.pt').write_bytes(os.urandom(4096)); (d/'empty.pt').write_bytes(b'')
    torch.save(torch.nn.Linear(3, 3), d/'whole_model.pt'); torch.save(torch.zeros(3, 4), d/'tensor.pt')
    torch.save({'epoch': 7, 'lr': 0.1}, d/'trainer.pt'); torch.save([torch.zeros(1)], d/'list.pt')
    torch.save(_network('efficientnet_lite0').state_dict(), d/'efficientnet.pt'); torch.save(torchvision.models.squeezenet1_1().state_dict(), d/'squeezenet.pt')
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), d/'ten_classes.pt')
    torch.save(resnet | {'layer1.0.conv1.weight': resnet['layer1.0.conv1.weight'] * math.nan}, d/'nan.pt')
    torch.save(resnet, d/'good.pt'); (d/'truncated.pt').write_bytes((d/'good.pt').read_bytes()[:100_000])
    torch.save({'state_dict': {'module.' + k: v for k, v in resnet.items()}, 'epoch': 3}, d/'wrapped.pt')
    torch.save(resnet | {'layer2.0.bn1.running_var': resnet['layer2.0.bn1.running_var'] - 2}, d/'negative_var.pt')
    torch.save(resnet | {'layer1.0.conv1.weight': resnet['layer1.0.conv1.weight'] * 1e38}, d/'huge.pt')
    torch.save(resnet | {k: resnet[k] * 1e14 for k in ('conv1.weight', 'layer1.0.conv1.weight', 'layer1.0.conv2.weight')}, d/'overflow.pt')
    return d


CHECKPOINTS = {
    'text.pt': 'is not a PyTorch file', 'random.pt': 'is not a PyTorch file', 'empty.pt': 'is empty',
    'whole_model.pt': 'holds a pickled torch.nn.modules.linear.Linear object, not a state dict of tensors',
    'tensor.pt': 'holds a Tensor of shape [3, 4], not a state dict', 'trainer.pt': 'holds a dict without tensors (keys: epoch, lr)',
    'list.pt': 'holds a list, not a state dict',
    'efficientnet.pt': 'is not a state dict of resnet18: ', 'squeezenet.pt': '; check --model',
    'ten_classes.pt': 'it classifies 10 classes (fc.weight has shape [10, 512]), resnet18 here the 1000 ImageNet classes',
    'nan.pt': 'holds NaN or infinite values in layer1.0.conv1.weight', 'truncated.pt': 'cannot be read',
    'negative_var.pt': 'holds negative values in layer2.0.bn1.running_var (as low as -1',
    'huge.pt': 'e+37 in layer1.0.conv1.weight, beyond 1.8e+15: the squared norms of its layer would leave the float32 range',
    'overflow.pt': 'makes the output of layer layer1.0.conv2 on a grey image not finite (its largest value, ',
}


@pytest.mark.parametrize('name', list(CHECKPOINTS))
def test_checkpoint(capsys, tmp_path, checkpoints, one_photo, name):
    line = one_line_error(capsys, 'report', '--model', 'resnet18', '--weights', checkpoints/name, '--data', one_photo, '--size', 8,
                          '--device', 'cpu', '--out', tmp_path/'out')
    assert line.startswith(f'condbook report: error: checkpoint {checkpoints/name} ') and CHECKPOINTS[name] in line, line
    assert 'weights_only' not in line  # never advise loading an untrusted pickle
    assert not (tmp_path/'out').exists()


def test_checkpoint_of_another_model_names_it(capsys, tmp_path, checkpoints, one_photo):
    line = one_line_error(capsys, 'report', '--model', 'resnet18', '--weights', checkpoints/'efficientnet.pt', '--data', one_photo, '--out', tmp_path)
    assert line.endswith('it is a state dict of efficientnet_lite0: use --model efficientnet_lite0'), line


def test_checkpoint_wrapped_in_a_training_dict_loads(checkpoints):
    "A state dict under 'state_dict', saved from DataParallel ('module.' prefixes): the same network as the plain one."
    a, b = load_model('resnet18', str(checkpoints/'wrapped.pt')), load_model('resnet18', str(checkpoints/'good.pt'))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad(): torch.testing.assert_close(a(x), b(x))


# ---------------------------------------------------------------------------------------------------------------------------
# Image formats, modes and file-system oddities, one file each: read correctly (compared with the picture it holds), or skipped
# with the reason.
def _rgb(seed=1, size=(40, 48)):
    g = np.random.default_rng(seed)
    return (g.random((*size, 3)) * 255).astype(np.uint8)


def _save(path, im, **kw): im.save(path, **kw); return path


IMAGES = {  # name: (make(folder) -> path, the RGB picture it should read as (None: the file as PIL reads it; a str: skipped, with this reason))
    'rgb.png': (lambda d: _save(d/'rgb.png', Image.fromarray(_rgb())), lambda: Image.fromarray(_rgb())),
    'rgb.jpg': (lambda d: _save(d/'rgb.jpg', Image.fromarray(_rgb()), quality=95), None),
    'progressive.jpg': (lambda d: _save(d/'progressive.jpg', Image.fromarray(_rgb()), progressive=True), None),
    'UPPER.JPG': (lambda d: _save(d/'UPPER.JPG', Image.fromarray(_rgb())), None),
    'gray.png': (lambda d: _save(d/'gray.png', Image.fromarray(_rgb()[..., 0])), lambda: Image.fromarray(_rgb()[..., 0]).convert('RGB')),
    'gray_alpha.png': (lambda d: _save(d/'gray_alpha.png', Image.fromarray(_rgb()[..., :2].copy(), 'LA')), lambda: Image.fromarray(_rgb()[..., 0]).convert('RGB')),
    'rgba.png': (lambda d: _save(d/'rgba.png', Image.fromarray(np.dstack([_rgb(), _rgb(2)[..., 0]]), 'RGBA')), lambda: Image.fromarray(_rgb())),
    'palette.png': (lambda d: _save(d/'palette.png', Image.fromarray(_rgb()).quantize(16)), lambda: Image.fromarray(_rgb()).quantize(16).convert('RGB')),
    'palette_transparent.png': (lambda d: _save(d/'palette_transparent.png', Image.fromarray(_rgb()).quantize(16), transparency=3),
                                lambda: Image.fromarray(_rgb()).quantize(16).convert('RGB')),
    'bilevel.png': (lambda d: _save(d/'bilevel.png', Image.fromarray(_rgb()[..., 0] > 127)), lambda: Image.fromarray((_rgb()[..., 0] > 127).astype(np.uint8) * 255).convert('RGB')),
    'cmyk.jpg': (lambda d: _save(d/'cmyk.jpg', Image.fromarray(_rgb()).convert('CMYK'), quality=95), None),
    'gray16.png': (lambda d: _save(d/'gray16.png', Image.fromarray((_rgb()[..., 0].astype(np.uint16) * 257))),
                   lambda: Image.fromarray(_rgb()[..., 0]).convert('RGB')),
    'gray16_bigendian.tif': (lambda d: _save(d/'gray16_bigendian.tif', Image.frombytes('I;16B', (48, 40), (_rgb()[..., 0].astype('>u2') * 257).tobytes())),
                             lambda: Image.fromarray(_rgb()[..., 0]).convert('RGB')),
    'rgb.webp': (lambda d: _save(d/'rgb.webp', Image.fromarray(_rgb()), lossless=True), lambda: Image.fromarray(_rgb())),
    'rgb.bmp': (lambda d: _save(d/'rgb.bmp', Image.fromarray(_rgb())), lambda: Image.fromarray(_rgb())),
    'rgb.tiff': (lambda d: _save(d/'rgb.tiff', Image.fromarray(_rgb())), lambda: Image.fromarray(_rgb())),
    'gif named .png': (lambda d: _save(d/'really_a_gif.png', Image.fromarray(_rgb()).quantize(8), format='GIF'),
                       lambda: Image.fromarray(_rgb()).quantize(8).convert('RGB')),
    'one pixel': (lambda d: _save(d/'dot.png', Image.new('RGB', (1, 1), (10, 200, 30))), lambda: Image.new('RGB', (1, 1), (10, 200, 30))),
    'long strip 2000×3': (lambda d: _save(d/'strip.png', Image.fromarray(_rgb(size=(3, 2000)))), lambda: Image.fromarray(_rgb(size=(3, 2000)))),
    'name with spaces and ünïcode': (lambda d: _save(d/'n01443537 gold fïsh.png', Image.fromarray(_rgb())), lambda: Image.fromarray(_rgb())),
    'empty file': (lambda d: (d/'empty.jpg', (d/'empty.jpg').write_bytes(b''))[0], 'not an image PIL can read'),
    'text named .jpg': (lambda d: (d/'notes.jpg', (d/'notes.jpg').write_text('not an image'))[0], 'not an image PIL can read'),
    'truncated jpeg': (lambda d: (d/'cut.jpg', (d/'cut.jpg').write_bytes(_save(d/'full.bin', Image.fromarray(_rgb()), format='JPEG').read_bytes()[:600]))[0],
                       'OSError: Truncated File Read'),
    'truncated png': (lambda d: (d/'cut.png', (d/'cut.png').write_bytes(_save(d/'full.bin', Image.fromarray(_rgb()), format='PNG').read_bytes()[:300]))[0],
                      'image file is truncated'),
    'decompression bomb 15000²': (lambda d: (d/'bomb.png', (d/'bomb.png').write_bytes(png_header(15000, 15000)))[0],
                                  "Image size (225000000 pixels) exceeds limit of 178956970 pixels: over PIL's decompression-bomb limit"),
    'over the pixel limit 10000²': (lambda d: (d/'big.png', (d/'big.png').write_bytes(png_header(10000, 10000)))[0],
                                    "Image size (100000000 pixels) exceeds limit of 89478485 pixels: over PIL's decompression-bomb limit"),
    'extreme strip 100000×1': (lambda d: _save(d/'line.png', Image.new('L', (100000, 1))), "100000×1 pixels: resized to a short side of 37 it would exceed PIL's pixel limit"),
    '32-bit integer pixels': (lambda d: _save(d/'int32.tif', Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8))),
                              '32-bit integer pixels (PIL mode I) have no standard range'),
    'float pixels': (lambda d: _save(d/'float.tif', Image.fromarray(np.ones((8, 8), np.float32))), 'floating-point pixels (PIL mode F) have no standard range'),
    'broken link': (lambda d: (d/'link.png', (d/'link.png').symlink_to(d/'nowhere.png'))[0], 'the file is gone (a broken link'),
}


@pytest.mark.parametrize('case', list(IMAGES))
def test_image(tmp_path, case):
    make, picture = IMAGES[case]
    path = make(tmp_path)
    for f in tmp_path.glob('full.bin'): f.unlink()
    images = image_folder(tmp_path)
    assert images.files == [path.name]
    tf = pixel_transform(crop=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        x = images.load(0, tf)
    if isinstance(picture, str):
        assert x is None and images.skipped == [(path.name, images.skipped[0][1])] and picture in images.skipped[0][1], images.skipped
        assert [str(w.message) for w in caught] == [f'skipped {path.name}: {images.skipped[0][1]}'] and caught[0].category is SkippedImage
        assert str(tmp_path) not in images.skipped[0][1], 'the reason repeats the path'
        return
    assert not caught, [str(w.message) for w in caught]  # no raw PIL warning either (e.g. palette transparency)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    if picture is None:  # lossy formats: what PIL itself decodes, as RGB
        with Image.open(path) as im: expected = tf(im.convert('RGB'))
    else: expected = tf(picture())
    torch.testing.assert_close(x, expected, atol=1.5 / 255, rtol=0)


def test_16_bit_gray_is_not_white(tmp_path):
    "The case of the issue: a dark 16-bit grayscale PNG stays dark (PIL's own conversion makes it white)."
    ramp = (np.linspace(0, 0.3, 64 * 64).reshape(64, 64) * 65535).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path/'dark16.png')
    x = image_folder(tmp_path).load(0, pixel_transform(crop=32))
    assert abs(x.mean().item() - ramp.mean() / 65535) < 0.01 and x.max() < 0.32


def test_class_folders_with_stray_files(tmp_path):
    "Class subfolders plus an empty folder, a hidden folder and a README: only the images, labelled by folder."
    for w in ('n01443537', 'n01440764'):
        (tmp_path/w).mkdir(); photo(tmp_path/w/'a.JPEG'); (tmp_path/w/'.DS_Store').write_bytes(b'x')
    (tmp_path/'empty').mkdir(); (tmp_path/'.git').mkdir(); photo(tmp_path/'.git'/'x.png'); (tmp_path/'README.md').write_text('hi')
    images = image_folder(tmp_path)
    assert images.files == ['n01440764/a.JPEG', 'n01443537/a.JPEG'] and images.labels == [0, 1]


# ---------------------------------------------------------------------------------------------------------------------------
# Runs: folders that change between runs, interrupted runs, a run that must not start.
@pytest.fixture(scope='module')
def base(tmp_path_factory):
    "A finished run on three files, the last one broken: (data folder, run folder)."
    root = tmp_path_factory.mktemp('base')
    data = root/'imgs'; data.mkdir()
    photo(data/'n01443537_goldfish.JPEG', 1); photo(data/'n01484850_shark.JPEG', 2); (data/'n01491361_tiger_shark.JPEG').write_bytes(b'not a jpeg')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', SkippedImage)
        run_experiment(ExperimentConfig(data=str(data), **TINY), root/'run', device='cpu', progress=False, summarize_at_end=False)
    return data, root/'run'


@pytest.fixture
def copy(base, tmp_path):
    "A copy of the base data and run: (config, data, run)."
    data, run = shutil.copytree(base[0], tmp_path/'imgs', symlinks=True), shutil.copytree(base[1], tmp_path/'run')
    return ExperimentConfig(data=str(data), **TINY), data, run


def rerun(cfg, run, limit=None, summarize_at_end=False):
    "Run again; (what it found, the warnings it gave)."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        run_experiment(cfg, run, limit, device='cpu', progress=False, summarize_at_end=summarize_at_end)
    return json.loads((run/'files.json').read_text())['found'], [str(w.message) for w in caught]


def measured(cfg, run, limit=None):
    return complete_rows(load_results(run, limit), cfg.measurements())


def test_base_run(base):
    data, run = base
    text = (run/'results-0-of-1.jsonl').read_text()
    assert str(data) not in text and '"path"' not in text, 'rows hold no path of this machine'
    df = load_results(run)
    assert list(df[df.measurement == 'unreadable'].file) == ['n01491361_tiger_shark.JPEG']
    assert sorted(measured(ExperimentConfig(data=str(data), **TINY), run).file.unique()) == ['n01443537_goldfish.JPEG', 'n01484850_shark.JPEG']


def test_rerun_of_an_unchanged_folder_measures_nothing(copy):
    cfg, data, run = copy
    before = (run/'results-0-of-1.jsonl').read_bytes()
    found, said = rerun(cfg, run)
    assert found == dict(images=3, new=0, changed=0, before=3, unreadable_before=1, gone=0) and not said
    assert (run/'results-0-of-1.jsonl').read_bytes() == before


def test_a_file_that_sorts_first_with_limit(copy):
    "The issue's case: add a file that sorts first and rerun with --limit 2: the new file is measured, the goldfish once."
    cfg, data, run = copy
    photo(data/'n01440764_tench.JPEG', 3)
    found, _ = rerun(cfg, run, limit=2, summarize_at_end=True)
    assert found == dict(images=2, new=1, changed=0, before=1, unreadable_before=0, gone=0)
    assert list(pd.read_csv(run/'per_image.csv').file) == ['n01440764_tench.JPEG', 'n01443537_goldfish.JPEG']
    assert list(pd.read_csv(run/'per_image.csv').label) == [0, 1]
    assert '- images measured: 2 (' in (run/'summary.md').read_text()
    rows = all_rows(run)
    assert sum(r['file'] == 'n01443537_goldfish.JPEG' and r['measurement'] == 'estimate' for r in rows) == 1


def test_a_known_unreadable_file_is_not_read_again(copy):
    "A new file lands in the chunk of the broken one: measured, and the broken one is not tried (nor reported) again."
    cfg, data, run = copy
    photo(data/'n01494475_hammerhead.JPEG', 6)
    found, said = rerun(cfg, run)
    assert found == dict(images=4, new=1, changed=0, before=3, unreadable_before=1, gone=0) and not said, said
    assert sorted(measured(cfg, run).file.unique()) == ['n01443537_goldfish.JPEG', 'n01484850_shark.JPEG', 'n01494475_hammerhead.JPEG']


def test_a_repaired_file_is_measured(copy):
    cfg, data, run = copy
    photo(data/'n01491361_tiger_shark.JPEG', 4)
    found, _ = rerun(cfg, run)
    assert found == dict(images=3, new=0, changed=1, before=2, unreadable_before=0, gone=0)
    df = load_results(run)
    assert 'unreadable' not in set(df.measurement) and len(measured(cfg, run).file.unique()) == 3


def test_an_edited_file_is_measured_again(copy):
    cfg, data, run = copy
    old = measured(cfg, run).query("file == 'n01484850_shark.JPEG' and measurement == 'estimate'").K.item()
    photo(data/'n01484850_shark.JPEG', 5)
    found, _ = rerun(cfg, run)
    assert found['changed'] == 1 and found['new'] == 0
    m = measured(cfg, run)
    new = m.query("file == 'n01484850_shark.JPEG' and measurement == 'estimate'")
    assert len(new) == 1 and new.K.item() != old  # the new image's numbers, not the old ones, and not both
    assert len(m) == 2 * len(cfg.measurements())


def test_a_deleted_file_is_gone(copy):
    cfg, data, run = copy
    (data/'n01443537_goldfish.JPEG').unlink()
    found, _ = rerun(cfg, run)
    assert found == dict(images=2, new=0, changed=0, before=2, unreadable_before=1, gone=1)
    assert list(measured(cfg, run).file.unique()) == ['n01484850_shark.JPEG']


def test_a_renamed_file_is_new(copy):
    "A new name may mean a new label (labels come from names): measured as a new image, the old name gone."
    cfg, data, run = copy
    (data/'n01443537_goldfish.JPEG').rename(data/'n01440764_goldfish.JPEG')
    found, _ = rerun(cfg, run)
    assert (found['new'], found['gone'], found['before']) == (1, 1, 2)
    m = measured(cfg, run)
    assert m.query("measurement == 'estimate' and file == 'n01440764_goldfish.JPEG'").label.item() == 0


def test_the_same_images_elsewhere_resume(copy, tmp_path):
    "The data folder moved (another machine, another mount): rows are keyed by relative path and content; nothing to do."
    cfg, data, run = copy
    (tmp_path/'elsewhere').mkdir()
    moved = shutil.move(data, tmp_path/'elsewhere'/'imgs')
    before = (run/'results-0-of-1.jsonl').read_bytes()
    found, _ = rerun(ExperimentConfig(data=str(moved), **TINY), run)
    assert found['before'] == 3 and (run/'results-0-of-1.jsonl').read_bytes() == before


def test_another_data_folder_is_refused(capsys, copy, tmp_path):
    cfg, data, run = copy
    other = shutil.copytree(data, tmp_path/'other')
    line = one_line_error(capsys, 'experiment', *TINY_CLI, '--data', other, '--out', run)
    assert "holds a run with another configuration (" in line and "data: 'imgs' there, 'other' now" in line and 'use another --out' in line


def test_a_torn_last_line_is_cut_and_said(copy):
    cfg, data, run = copy
    shard = run/'results-0-of-1.jsonl'
    full = shard.read_bytes()
    shard.write_bytes(full[:-25])  # the last row (the broken file's) torn in the middle
    found, said = rerun(cfg, run)
    torn = len(full.rstrip(b'\n').rsplit(b'\n', 1)[1]) + 1 - 25
    assert f'results-0-of-1.jsonl: cut a torn last line ({torn} bytes) left by an interrupted run; its measurement is redone' in said, said
    assert shard.read_bytes() == full  # the torn row, written again


def test_a_corrupt_line_is_said_and_redone(copy):
    cfg, data, run = copy
    shard = run/'results-0-of-1.jsonl'
    lines = shard.read_bytes().split(b'\n')
    k = next(i for i, l in enumerate(lines) if b'"random_sign"' in l)
    shard.write_bytes(b'\n'.join([*lines[:k], b'\x00\x00garbage{', *lines[k + 1:]]))
    with pytest.warns(ResultsWarning, match=f'results-0-of-1.jsonl: 1 corrupt line\\(s\\) left out \\(line {k + 1}'):
        assert len(measured(cfg, run).file.unique()) == 1  # the image that lost a row is not complete
    found, said = rerun(cfg, run)
    assert any('1 corrupt line(s) left out' in s for s in said)
    assert len(measured(cfg, run).file.unique()) == 2


def test_a_failed_start_writes_nothing(capsys, base, tmp_path, checkpoints):
    "A typo in --data, a bad size, a missing GPU or a bad checkpoint leave --out untouched, so the corrected command starts cleanly."
    data, _ = base
    out = tmp_path/'run'
    for argv in (['--data', data.parent/'imsg'], ['--data', data, '--model', 'alexnet'], ['--data', data, '--device', 'cuda:7'],
                 ['--data', data, '--weights', checkpoints/'ten_classes.pt'], ['--data', data, '--weights', checkpoints/'negative_var.pt'],
                 ['--data', data, '--weights', checkpoints/'huge.pt']):
        one_line_error(capsys, 'experiment', *TINY_CLI, *argv, '--out', out)
        assert not out.exists(), argv


def test_every_file_unreadable(capsys, tmp_path):
    "A folder whose every file is unreadable: one clear line per file, then one that says none could be read."
    data = tmp_path/'bad'; data.mkdir()
    (data/'a.jpg').write_bytes(b''); (data/'b.png').write_bytes(png_header(15000, 15000)); (data/'c.jpg').write_text('text')
    for argv in (['report', '--model', 'resnet18', '--weights', 'untrained', '--size', '8', '--device', 'cpu', '--data', data, '--out', tmp_path/'r'],
                 ['experiment', *TINY_CLI, '--data', data, '--out', tmp_path/'e']):
        _, _, lines = condbook(capsys, *argv, code=1)
        assert [l.split(':')[1] for l in lines if 'skipped' in l] == [' skipped a.jpg', ' skipped b.png', ' skipped c.jpg'], lines
        assert lines[-1].startswith(f'condbook {argv[0]}: error: none of the 3 image files of') and 'could be read: a.jpg: not an image PIL can read' in lines[-1], lines
        assert len(lines) == 4 + (argv[0] == 'experiment'), lines  # and what the run found


def test_a_bomb_among_good_images(capsys, tmp_path):
    """An image over PIL's pixel limit is skipped with its reason, on one line; the run goes on and its summary lists it.
    (Its only attack, Carlini–Wagner with one iteration, moves nothing: the log-log figures leave such points out.)"""
    data = tmp_path/'imgs'; data.mkdir()
    photo(data/'n01443537_goldfish.JPEG'); (data/'n01484850_huge.png').write_bytes(png_header(15000, 15000))
    cw = ['--attacks', 'cw_l2', '--cw-iterations', '1', '--cw-search-steps', '1']
    _, out, lines = condbook(capsys, 'experiment', *TINY_CLI, *cw, '--data', data, '--out', tmp_path/'run', code=0)
    assert [l for l in lines if 'huge' in l] == ["condbook: skipped n01484850_huge.png: Image size (225000000 pixels) exceeds limit of 178956970 "
                                                 "pixels: over PIL's decompression-bomb limit (resize it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it)"]
    summary = (tmp_path/'run'/'summary.md').read_text()
    assert '- images measured: 1 (' in summary and 'Skipped 1 unreadable files: n01484850_huge.png (Image size (225000000 pixels)' in summary
    _, _, again = condbook(capsys, 'experiment', *TINY_CLI, *cw, '--data', data, '--out', tmp_path/'run', code=0)
    assert not [l for l in again if 'skipped' in l], 'a file measured as unreadable is not read again'
    assert 'condbook: imgs: 2 images, 0 new, 0 changed, 2 measured before (1 of them unreadable)' in again, again


def test_migrated_rows_resume(copy, tmp_path):
    "Rows written by condbook before file keys (index and absolute path): migrated, they are the same rows and nothing is measured again."
    cfg, data, run = copy
    pairs = read_manifest(run)
    place = {f: i for i, (f, _) in enumerate(pairs)}
    old = [{'image': place[r['file']], 'measurement': r['measurement'], 'eps': r['eps'], 'path': str(data.resolve()/r['file']),
            **{k: v for k, v in r.items() if k not in ('file', 'sha', 'measurement', 'eps')}} for r in all_rows(run)]
    (run/'results-0-of-1.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in old)); (run/'files.json').unlink()
    with pytest.raises(Exception, match='migrate_results'): load_results(run)
    assert migrate_results(run, data)['converted'] == len(old)
    found, _ = rerun(cfg, run)
    assert found['before'] == 3 and found['new'] == found['changed'] == 0
    assert [r['file'] for r in all_rows(run)] == [pairs[r['image']][0] for r in old]


# ---------------------------------------------------------------------------------------------------------------------------
# The API cases of issue 19 §5.
def _warns_on_zero_output():
    from condbook.estimator import local_condition
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    torch.nn.init.zeros_(net[1].weight); torch.nn.init.zeros_(net[1].bias)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        v = local_condition(net, torch.rand(2, 3, 2, 2))
    return bool(w) and torch.isnan(v).all()


def test_local_condition_warns_when_the_output_is_zero():
    assert _warns_on_zero_output()


def _refuses_exp_bits_0():
    from condbook.bitwidth import predict_bits
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    try: predict_bits(net, torch.rand(2, 3, 2, 2), 'float', 'weights', exp_bits=0)
    except ValueError as e: return 'exponent bits' in str(e) and 'got 0' in str(e)
    return False


def test_predict_bits_refuses_zero_exponent_bits():
    assert _refuses_exp_bits_0()


# ---------------------------------------------------------------------------------------------------------------------------
# Issue 36: runs that cannot lose or mix results.
ODD = b'n01440764_\xe9t\xe9.JPEG'  # a file name that is not valid UTF-8
ODD_SHOWN = 'n01440764_\\xe9t\\xe9.JPEG'  # how every output writes it
TINY_REPORT = ['--model', 'resnet18', '--weights', 'untrained', '--size', '8', '--device', 'cpu', '--batch-size', '2']


def odd_file(folder, name=ODD, content=None, seed=0):
    "A file named by raw bytes in `folder`: a photo, or `content`."
    path = Path(os.fsdecode(os.fsencode(folder) + b'/' + name))
    if content is None: return photo(path, seed)
    path.write_bytes(content); return path


def files_of(folder):
    "Every file under `folder` with its bytes: what must not change."
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob('*')) if p.is_file()}


@pytest.mark.parametrize('command', ['experiment', 'report'])
def test_a_file_name_that_is_not_utf8(capsys, tmp_path, command):
    "Measured and written out escaped as \\xNN in the rows, the CSV and the summary; an unreadable one is listed the same way; no temp file left."
    data = tmp_path/'imgs'; data.mkdir()
    odd_file(data); photo(data/'n01443537_goldfish.JPEG', 1); odd_file(data, b'n01484850_\xff.JPEG', b'junk')
    argv = [command, *(TINY_CLI if command == 'experiment' else TINY_REPORT), '--data', data, '--out', tmp_path/'run']
    _, out, lines = condbook(capsys, *argv, code=0)
    assert [l for l in lines if 'skipped' in l] == ['condbook: skipped n01484850_\\xff.JPEG: not an image PIL can read (empty, corrupt, or another format)']
    run = tmp_path/'run'
    per_image = pd.read_csv(run/'per_image.csv')
    col = 'file' if command == 'experiment' else 'image'
    assert list(per_image[col]) == [ODD_SHOWN, 'n01443537_goldfish.JPEG'] and list(per_image.label) == [0, 1]
    summary = (run/'summary.md').read_bytes().decode('utf-8')  # valid UTF-8
    assert 'Skipped 1 unreadable files: n01484850_\\xff.JPEG (not an image PIL can read' in summary
    if command == 'experiment':
        assert {r['file'] for r in all_rows(run)} == {ODD_SHOWN, 'n01443537_goldfish.JPEG', 'n01484850_\\xff.JPEG'}
        before = files_of(run)
        _, _, again = condbook(capsys, *argv, code=0)  # resumes: nothing new, the same rows
        assert 'condbook: imgs: 3 images, 0 new, 0 changed, 3 measured before (1 of them unreadable)' in again, again
        assert (run/'results-0-of-1.jsonl').read_bytes() == before[Path('results-0-of-1.jsonl')]
        assert condbook(capsys, 'summarize', run, code=0)[1].strip() == f'wrote {run}/summary.md'
    assert not [p for p in run.iterdir() if p.name.endswith('.tmp') or p.name.startswith('.condbook-lock')], list(run.iterdir())


def test_a_report_that_fails_keeps_the_previous_one(capsys, tmp_path, one_photo):
    "A report whose every image is unreadable says so and leaves the report that was there whole (nothing truncated, nothing removed)."
    run = _report_folder(tmp_path/'run')
    (run/'config.json').write_text('{"command": "report"}')
    before = files_of(run)
    bad = tmp_path/'bad'; bad.mkdir(); (bad/'a.jpg').write_bytes(b'')
    line = one_line_error(capsys, 'report', *TINY_REPORT, '--data', bad, '--out', run)
    assert 'none of the 1 image files of' in line and files_of(run) == before


def test_a_full_disk_is_one_line_and_loses_nothing(capsys, tmp_path, one_photo, monkeypatch):
    "ENOSPC while writing a table: one line naming the table (not a temporary file); the files there before are whole; no temp file left."
    run = _report_folder(tmp_path/'run')
    before = files_of(run)
    def full(self, path, **kw):
        Path(path).write_text('half'); raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(pd.DataFrame, 'to_csv', full)
    line = one_line_error(capsys, 'report', *TINY_REPORT, '--data', one_photo, '--out', run)
    assert line == f'condbook report: error: cannot write {run}/layers.csv: No space left on device', line
    assert not [p for p in run.iterdir() if p.name.endswith('.tmp') or p.name.startswith('.condbook-lock')]
    assert files_of(run) == before, 'the report there before is whole'


def _report_folder(d):
    "A folder `condbook report` made (before reports recorded themselves: no config.json)."
    d.mkdir(); (d/'layers.csv').write_text('layer\n'); (d/'per_image.csv').write_text('image\n'); (d/'summary.md').write_text('# a report\n')
    return d


OWNERS = {
    'experiment into a report': (lambda d, base: ['experiment', *TINY_CLI, '--data', base[0], '--out', _report_folder(d/'r')],
                                 'holds the output of condbook report, not of condbook experiment: writing there would mix the two; use another --out'),
    'experiment into a recorded report': (lambda d, base: ['experiment', *TINY_CLI, '--data', base[0], '--out', _report_folder(d/'r'),
                                                           (d/'r'/'config.json').write_text('{"command": "report", "model": "resnet18"}')][:-1],
                                          'holds the output of condbook report, not of condbook experiment'),
    'report into an experiment': (lambda d, base: ['report', *TINY_REPORT, '--data', base[0], '--out', shutil.copytree(base[1], d/'r')],
                                  'holds the output of condbook experiment, not of condbook report: writing there would mix the two'),
    'summarize a report': (lambda d, base: ['summarize', _report_folder(d/'r'), (d/'r'/'config.json').write_text('{"command": "report"}'),
                                            (d/'r'/'results-0-of-1.jsonl').write_text('')][:2],
                           "holds the output of condbook report, not of condbook experiment: summarize reads an experiment's --out"),
    'experiment out is data': (lambda d, base: ['experiment', *TINY_CLI, '--data', shutil.copytree(base[0], d/'imgs'), '--out', d/'imgs'],
                               'is inside --data {d}/imgs: the next run would read its tables and figures as images; use a folder outside'),
    'experiment out inside data': (lambda d, base: ['experiment', *TINY_CLI, '--data', shutil.copytree(base[0], d/'imgs'), '--out', d/'imgs'/'run'],
                                   '--out {d}/imgs/run is inside --data {d}/imgs'),
    'report out inside data': (lambda d, base: ['report', *TINY_REPORT, '--data', shutil.copytree(base[0], d/'imgs'), '--out', d/'imgs'/'x'/'..'/'run'],
                               'is inside --data {d}/imgs'),
    'out under a file': (lambda d, base: ['experiment', *TINY_CLI, '--data', base[0], '--out', photo(d/'f.png')/'run'],
                         '--out {d}/f.png/run: {d}/f.png is a file, not a folder'),
    'report out in a read-only place': (lambda d, base: ['report', *TINY_REPORT, '--out', '/sys/condbook-run'], '--out /sys/condbook-run: cannot write in /sys ('),
    'experiment out in a read-only place': (lambda d, base: ['experiment', *TINY_CLI, '--out', '/sys/condbook-run'], '--out /sys/condbook-run: cannot write in /sys ('),
}


@pytest.mark.parametrize('case', list(OWNERS))
def test_one_owner_per_folder(capsys, tmp_path, base, case):
    "A folder is written by one command: another command's output, --out inside --data or an unwritable place is refused before any work."
    make, says = OWNERS[case]
    argv = make(tmp_path, base)
    before = files_of(tmp_path)
    line = one_line_error(capsys, *argv)
    assert says.format(d=tmp_path) in line, line
    assert files_of(tmp_path) == before and not list(tmp_path.rglob('.condbook-*'))


def test_a_changed_checkpoint_is_refused(capsys, tmp_path, checkpoints, one_photo):
    "The run records the checkpoint's content hash: the same path with other weights is refused; the rows are untouched."
    ckpt, run = shutil.copy(checkpoints/'good.pt', tmp_path/'net.pt'), tmp_path/'run'
    argv = ['experiment', *TINY_CLI[:2], '--weights', ckpt, *TINY_CLI[4:], '--data', one_photo, '--out', run]
    condbook(capsys, *argv, code=0)
    saved = json.loads((run/'config.json').read_text())
    assert saved['command'] == 'experiment' and saved['weights_sha256'] == hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()
    before = files_of(run)
    state = torch.load(ckpt); state['fc.bias'] = state['fc.bias'] + 1; torch.save(state, ckpt)  # retrained in place
    line = one_line_error(capsys, *argv)
    assert f'the checkpoint {ckpt} is not the one the run in {run} was made with (its content changed: sha256 ' in line, line
    assert line.endswith('restore that checkpoint, or use another --out for this one') and files_of(run) == before


def test_a_run_that_does_not_record_its_checkpoint(capsys, tmp_path, checkpoints, one_photo):
    "A run made before the hash was recorded: refused, saying how to vouch for the file; once done, it resumes with nothing to measure."
    ckpt, run = shutil.copy(checkpoints/'good.pt', tmp_path/'net.pt'), tmp_path/'run'
    argv = ['experiment', *TINY_CLI[:2], '--weights', ckpt, *TINY_CLI[4:], '--data', one_photo, '--out', run]
    condbook(capsys, *argv, code=0)
    saved = json.loads((run/'config.json').read_text())
    (run/'config.json').write_text(json.dumps({k: v for k, v in saved.items() if k not in ('weights_sha256', 'command')}))
    line = one_line_error(capsys, *argv)
    assert f'records no content hash of the checkpoint {ckpt} (a run made before condbook recorded it): if the file is unchanged since, ' \
           f'add "weights_sha256": "{saved["weights_sha256"]}" to it; else use another --out' in line, line
    (run/'config.json').write_text(json.dumps({k: v for k, v in saved.items() if k != 'command'}))
    _, _, lines = condbook(capsys, *argv, code=0)
    assert f'condbook: {one_photo.name}: 1 images, 0 new, 0 changed, 1 measured before' in lines, lines


@pytest.mark.parametrize('setting,value,default', [('seed', '1', 0), ('draws', '3', 16), ('labels', 'L', None)])
def test_a_recorded_configuration_missing_a_setting(capsys, copy, setting, value, default):
    "A config.json without a setting (an older run, an edited file) was made with its default: another value is refused, the default resumes."
    cfg, data, run = copy
    saved = json.loads((run/'config.json').read_text())
    if setting == 'labels':
        (data.parent/'L').write_text('n01443537 n01443537\n'); value = str(data.parent/'L')
        saved.pop('labels_sha256', None)
    (run/'config.json').write_text(json.dumps({k: v for k, v in saved.items() if k != setting}))
    before = files_of(run)
    argv = [a for a in TINY_CLI if a]
    if setting == 'draws': argv[argv.index('--draws') + 1] = value
    else: argv += [f'--{setting}', value]
    line = one_line_error(capsys, 'experiment', *argv, '--data', data, '--out', run)
    assert f'config.json records no {setting} (a run made before condbook recorded it, or an edited file), so its rows were made with the ' \
           f'default ({setting} = {default!r})' in line and line.endswith('resume with the default, or use another --out'), line
    assert files_of(run) == before
    if setting == 'seed':
        _, _, lines = condbook(capsys, 'experiment', *TINY_CLI, '--data', data, '--out', run, code=0)
        assert 'condbook: imgs: 3 images, 0 new, 0 changed, 3 measured before (1 of them unreadable)' in lines


def _lock(run, pid, **extra):
    from condbook.core import _started
    import socket
    (run/'.condbook-lock-0-of-1').write_text(json.dumps(dict(pid=pid, started=_started(pid), host=socket.gethostname(), command='experiment') | extra))


@pytest.mark.parametrize('command', ['experiment', 'report'])
def test_a_folder_in_use(capsys, copy, command, tmp_path):
    "A live process's lock stops a second one in one line, and nothing is written; a dead process's lock is stale: taken over, then released."
    import subprocess
    cfg, data, run = copy
    if command == 'report': run = tmp_path/'rep'; run.mkdir()
    argv = [command, *(TINY_CLI if command == 'experiment' else TINY_REPORT), '--data', data, '--out', run]
    other = subprocess.Popen(['sleep', '60'])
    try:
        _lock(run, other.pid)
        before = files_of(run)
        line = one_line_error(capsys, *argv)
        assert line == f'condbook {command}: error: {run} is in use by another condbook process (PID {other.pid}, condbook experiment): wait for it ' \
                       f'to finish, or, if that process is gone, remove {run}/.condbook-lock-0-of-1', line
        assert files_of(run) == before
    finally: other.kill(); other.wait()
    if command == 'report': return  # (the same lock as an experiment's: its stale cases once, below, where a run is quicker)
    _lock(run, other.pid)  # its process is gone now
    condbook(capsys, *argv, code=0)
    assert not list(run.glob('.condbook-lock*')), 'released on exit'
    _lock(run, os.getpid(), started=1)  # a PID that another process has taken since: stale too
    condbook(capsys, *argv, code=0)


@pytest.mark.parametrize('layout', ['not wnids', 'labels file', 'mixed', 'bad labels file', 'flat mixed'])
def test_class_folders_not_named_by_wnid(capsys, tmp_path, layout):
    "cat/ and dog/ are unlabelled (no accuracy), said once; a labels file maps them; a mixed layout is refused or said, never silently -1."
    data = tmp_path/'pets'; data.mkdir()
    names = {'not wnids': ['cat', 'dog'], 'labels file': ['cat', 'dog'], 'mixed': ['cat', 'n01443537'], 'bad labels file': ['cat', 'dog']}
    for i, n in enumerate(names.get(layout, [])): (data/n).mkdir(); photo(data/n/'a.JPEG', i)
    if layout == 'flat mixed': photo(data/'n01443537_a.JPEG'); photo(data/'cat.JPEG', 1)
    labels = {'labels file': 'cat n02123045  # tabby\ndog 207\n', 'bad labels file': 'cat\n'}.get(layout)
    extra = ['--labels', tmp_path/'labels.txt', (tmp_path/'labels.txt').write_text(labels)][:2] if labels else []
    argv = ['experiment', *TINY_CLI, '--data', data, '--out', tmp_path/'run', *extra]
    if layout in ('mixed', 'bad labels file'):
        line = one_line_error(capsys, *argv)
        assert {'mixed': f'{data} mixes class folders named by WordNet id (n01443537) with others (cat): name every folder by its wnid, '
                         'or give --labels FILE mapping each folder to an ImageNet class',
                'bad labels file': f"labels file {tmp_path}/labels.txt, line 1: expected NAME CLASS (CLASS a WordNet id such as n01440764 "
                                   "or an index 0..999), got 'cat'"}[layout] in line, line
        assert not (tmp_path/'run').exists()
        return
    if layout != 'not wnids':  # what the labels are (the run itself: below)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            images = image_folder(data, labels=extra[1] if extra else None)
        said = [str(w.message) for w in caught]
        if layout == 'labels file': assert images.labels == [281, 207] and not said
        else: assert images.labels == [-1, 1] and said == ['pets: 1 of 2 files (cat.JPEG) are not named <wnid>_…: unlabelled, left out of the accuracy']
        return
    _, _, lines = condbook(capsys, *argv, code=0)
    assert list(pd.read_csv(tmp_path/'run'/'per_image.csv').label) == [-1, -1]
    assert 'top-1 accuracy' not in (tmp_path/'run'/'summary.md').read_text()
    assert [l for l in lines if 'unlabelled' in l] == ['condbook: pets: class folders cat, dog are not WordNet ids: their images are unlabelled '
                                                      '(no accuracy); --labels FILE maps them to ImageNet classes'], lines


def _row(**kw):
    return json.dumps({'file': 'a.png', 'sha': '1', 'measurement': 'local_condition', 'eps': None, 'local_condition': 2.5} | kw)


FOREIGN = {
    'a number as text': (_row(local_condition='big'), 'local_condition is "big", not a number or null'),
    'a list for a number': (_row(local_condition=[1]), 'local_condition is [1], not a number or null'),
    'a label as text': (_row(measurement='estimate', label='cat'), 'label is "cat", not a number'),
    'an estimate without its bound': (_row(measurement='estimate', label=1, prediction=1), 'a estimate row without margin'),
    'missing value': (_row(measurement='random_sign', eps=0.1), 'a random_sign row without max_amplification'),
    'a measurement of another program': (_row(measurement='accuracy'), "measurement 'accuracy' is none of condbook experiment's"),
    'file as a number': (_row(file=3), 'file is 3, not text'),
    'eps as text': (_row(eps='0.1'), 'eps is "0.1", not a number or null'),
    'flipped as text': (_row(measurement='attack_fgsm', eps=0.1, amplification=1.0, flipped='no', distance=0.1), 'flipped is "no", not true/false or a number'),
    'a per-layer factor as text': (_row(measurement='estimate', label=1, prediction=1, margin=1., K=2., activation_bound=1., lipschitz=3.,
                                        certified_radius=.1, skipped='', kappa={'conv1': 'big'}), "kappa['conv1'] is \"big\", not a number"),
}


@pytest.mark.parametrize('case', list(FOREIGN))
def test_summarize_refuses_foreign_rows(capsys, tmp_path, case):
    "A row with the key fields but a wrong type or a missing value: refused naming its line; nothing written."
    row, says = FOREIGN[case]
    _results(tmp_path, _row() + '\n' + row + '\n')
    before = files_of(tmp_path)
    line = one_line_error(capsys, 'summarize', tmp_path)
    assert line == f'condbook summarize: error: {tmp_path}/results-0-of-1.jsonl, line 2: {says}: not a row of condbook experiment; ' \
                   'remove that line (or use another --out)', line
    assert files_of(tmp_path) == before


CACHE_ENTRIES = {  # what is planted in the cache file of a layer constant: each is computed again, never accepted
    'edited value': lambda key, d: {'value': 0.5, 'key': key, 'digest': d(key, 2.0)},
    'no digest (an older cache)': lambda key, d: {'value': 0.5},
    'zero with its digest, of another key': lambda key, d: {'value': 0.0, 'key': 'other', 'digest': d('other', 0.0)},
    'negative with a matching digest': lambda key, d: {'value': -3.0, 'key': key, 'digest': d(key, -3.0)},
    '1e400': lambda key, d: {'value': 1e400, 'key': key, 'digest': d(key, 1e400)},
    'not JSON': lambda key, d: 'NaN]',
}


@pytest.mark.parametrize('case', list(CACHE_ENTRIES))
def test_a_tampered_cache_entry(tmp_path, monkeypatch, case):
    "An edited, foreign, negative or infinite cached constant is computed again (and stored again whole); the bound is the true one."
    from condbook import norms
    monkeypatch.setenv('CONDBOOK_CACHE', str(tmp_path))
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    true = norms.operator_norm(conv, (2, 6, 6), cache=False)
    key = norms.constant_key(conv, 'operator_norm', (2, 6, 6), 1e-4)
    path = tmp_path/'constants'/f'{key}.json'; path.parent.mkdir()
    entry = CACHE_ENTRIES[case](key, norms.cache_digest)
    path.write_text(entry if isinstance(entry, str) else json.dumps(entry))
    monkeypatch.setattr(norms, '_memory_cache', {})
    assert norms.operator_norm(conv, (2, 6, 6)) == pytest.approx(true, rel=1e-3)
    saved = json.loads(path.read_text())
    assert saved['key'] == key and saved['digest'] == norms.cache_digest(key, saved['value']) and saved['value'] == pytest.approx(true, rel=1e-3)


def test_a_cache_folder_others_can_write(tmp_path, monkeypatch):
    "A constants folder others can write to is not read (whatever it holds) and said once."
    from condbook import norms
    monkeypatch.setenv('CONDBOOK_CACHE', str(tmp_path))
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    key = norms.constant_key(conv, 'operator_norm', (2, 6, 6), 1e-4)
    (tmp_path/'constants').mkdir(); os.chmod(tmp_path/'constants', 0o777)
    (tmp_path/'constants'/f'{key}.json').write_text(json.dumps({'value': 1e-9, 'key': key, 'digest': norms.cache_digest(key, 1e-9)}))
    monkeypatch.setattr(norms, '_memory_cache', {}); monkeypatch.setattr(norms, '_warned', set())
    with pytest.warns(UserWarning, match='constants can be changed by other users: its layer constants are not used'):
        assert norms.operator_norm(conv, (2, 6, 6)) == pytest.approx(norms.operator_norm(conv, (2, 6, 6), cache=False), rel=1e-3)


def test_a_full_disk_during_a_run_loses_nothing(capsys, copy, monkeypatch):
    "ENOSPC while appending rows: one line naming the results file; the next run cuts what was half written and completes the rows, once each."
    cfg, data, run = copy
    photo(data/'n01494475_hammerhead.JPEG', 6)
    real = os.fsync
    def full(fd):
        if os.readlink(f'/proc/self/fd/{fd}').endswith('.jsonl'): raise OSError(errno.ENOSPC, 'No space left on device')
        return real(fd)
    monkeypatch.setattr(os, 'fsync', full)
    line = one_line_error(capsys, 'experiment', *TINY_CLI, '--data', data, '--out', run)
    assert line == f'condbook experiment: error: cannot write {run}/results-0-of-1.jsonl: No space left on device; the rows written before ' \
                   'are kept: fix that and run the same command to resume', line
    monkeypatch.setattr(os, 'fsync', real)
    condbook(capsys, 'experiment', *TINY_CLI, '--data', data, '--out', run, code=0)
    rows = all_rows(run)
    assert len(rows) == len({tuple(map(str, (r['file'], r['sha'], r['measurement'], r['eps']))) for r in rows})
    assert len(measured(cfg, run).file.unique()) == 3


def test_a_photo_turned_by_exif(tmp_path):
    "A photo whose EXIF orientation turns it for display is read as stored (as torchvision reads ImageNet); the first such file is named."
    from condbook.data import TurnedImage
    im, exif = Image.fromarray(_rgb()), Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path/'turned.jpg', exif=exif, quality=95); im.save(tmp_path/'plain.jpg', quality=95); im.save(tmp_path/'turned2.jpg', exif=exif, quality=95)
    images, tf = image_folder(tmp_path), pixel_transform(crop=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        plain, turned, _ = (images.load(i, tf) for i in range(3))
    torch.testing.assert_close(plain, turned)  # the pixels as stored
    assert [(w.category, str(w.message)) for w in caught] == [(TurnedImage, 'turned.jpg: its EXIF orientation (6) turns it for display; condbook reads '
                                                               'every image as stored, as torchvision reads ImageNet (later files with an orientation are not named)')]
    assert images.turned == ['turned.jpg', 'turned2.jpg']


def test_two_names_that_escape_alike_are_refused(tmp_path):
    "b'a\\xe9.png' is written a\\xe9.png, like a file named so with a backslash: the two would share their rows, so the folder is refused."
    odd_file(tmp_path, b'n01440764_\xe9.png'); photo(tmp_path/'n01440764_\\xe9.png', 1)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: the file names n01440764_\\xe9.png are the same once their bytes that are not "
                                                   "UTF-8 are written as \\xNN: rename one of them")):
        image_folder(tmp_path)


def test_timm_models_on_the_command_line(capsys, tmp_path):
    "`--model timm/ARCH` runs a timm architecture; a name that is neither condbook's nor timm's gets one line."
    pytest.importorskip('timm')
    assert 'timm/ARCH' in one_line_error(capsys, 'report', '--model', 'resnet500', '--weights', 'untrained', code=2)
    err = one_line_error(capsys, 'report', '--model', 'timm/no_such_net', '--weights', 'untrained', '--out', tmp_path/'x')
    assert "unknown timm architecture 'no_such_net'" in err
    condbook(capsys, 'report', '--model', 'timm/test_vit', '--weights', 'untrained', '--size', '32', '--limit', '1',
             '--out', tmp_path/'r', '--device', 'cpu', code=0)
    assert (tmp_path/'r'/'summary.md').read_text().startswith('# Condition report: timm/test_vit (untrained weights)')


NETS = """from torch import nn
def make(): return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 15 * 15, 10))
def number(): return 3
def feature_map(): return nn.Conv2d(3, 4, 3)
def broken(): raise ValueError('no such layer size')
answer = 42
"""
MODEL_ERRORS = [  # (--model, more options, the one line's text after 'condbook report: error: ')
    ('nets.py:make', ['--weights', 'imagenet'], "weights 'imagenet': nets.py:make is your own model; use --weights untrained"),
    ('missing.py:make', [], 'model file missing.py does not exist'),
    ('nets.py:big', [], "nets.py has no callable 'big'; it defines broken, feature_map, make, number"),
    ('nets.py:answer', [], "nets.py has no callable 'answer' (answer is of type int)"),
    ('nets.py:number', [], 'nets.py:number returned an object of type int, not a torch.nn.Module: the factory must return the network'),
    ('nets.py:broken', [], 'calling nets.py:broken failed (ValueError: no such layer size); run it in Python to see where'),
    ('nets.py:feature_map', [], 'nets.py:feature_map maps a [2, 3, 32, 32] batch to shape [2, 4, 30, 30]: condbook needs logits of '
                                'shape [batch, classes]'),
    ('nets:feature_map', [], 'nets:feature_map maps a [2, 3, 32, 32] batch to shape'),
    ('no_such_package.nets:make', [], "no module named 'no_such_package.nets' (is it installed, or on PYTHONPATH?)"),
    ('nets.py:make', ['--mean', '0.5'], 'mean and std: give both (the normalisation is (x - mean) / std) or neither'),
    ('squeezenet1_1', ['--size', '8'], 'squeezenet1_1 on a [2, 3, 8, 8] batch failed (RuntimeError: '),
    ('timm/no_such_net', [], "unknown timm architecture 'no_such_net': see timm.list_models()"),
]


@pytest.mark.parametrize('model,more,said', MODEL_ERRORS, ids=[m for m, *_ in MODEL_ERRORS])
def test_each_way_a_model_spec_fails_is_one_line(capsys, tmp_path, monkeypatch, model, more, said):
    "Every model form's failure (file, module, callable, what it returns, its output, its normalisation) ends in one line, status 1."
    if model.startswith('timm/'): pytest.importorskip('timm')
    monkeypatch.chdir(tmp_path); (tmp_path/'nets.py').write_text(NETS)
    weights = [] if '--weights' in more else ['--weights', 'untrained']
    line = one_line_error(capsys, 'report', '--model', model, *weights, '--size', '32', '--limit', '1', '--device', 'cpu', '--out', 'r', *more)
    assert line.startswith('condbook report: error: ' + said), line
    assert not (tmp_path/'r').exists()  # refused before any work
    sys.modules.pop('nets', None)  # `nets` imported from this test's folder is not the next test's


def test_timm_not_installed_is_one_line(capsys, tmp_path, monkeypatch):
    "Without timm, --model timm/ARCH says how to install it."
    monkeypatch.setitem(sys.modules, 'timm', None)  # `import timm` raises ImportError
    line = one_line_error(capsys, 'report', '--model', 'timm/resnet18', '--weights', 'untrained', '--out', tmp_path/'r')
    assert line == "condbook report: error: timm is not installed: pip install 'condbook[timm]'", line
