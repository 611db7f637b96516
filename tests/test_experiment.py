"The experiment runner end to end through the command line: every measurement, resume after kill -9, torchrun sharding."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest, torch
from PIL import Image
from condbook.attacks import ATTACKS
from condbook.experiment import ExperimentConfig, load_results, per_image_table, read_rows, row_key, saved_config
from condbook.perturb import PERTURBATIONS

CONDBOOK = str(Path(sys.executable).parent/'condbook')  # the console script; torchrun runs it as a script
SMALL = ['--model', 'alexnet', '--weights', 'untrained', '--size', '64', '--random-eps', '1e-3', '0.1', '--draws', '3', '--nb-iter', '3',
         '--cw-iterations', '5', '--flip-steps', '2', '--parameter-draws', '1', '--batch-size', '2', '--device', 'cpu']
FAST = SMALL + ['--no-bitwidth']  # resume and sharding are the runner's, whatever it measures: keep those runs short


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    "Three labelled ImageNet-named photos (random pixels) and one corrupt file."
    d = tmp_path_factory.mktemp('imgs')
    g = torch.Generator().manual_seed(0)
    for name in ['n01440764_a.JPEG', 'n01443537_b.JPEG', 'n01484850_c.JPEG']:
        Image.fromarray((torch.rand(70, 80, 3, generator=g) * 255).byte().numpy()).save(d/name)
    (d/'n01491361_broken.JPEG').write_bytes(b'not a jpeg')
    return d


def cli(*args, **kw):
    return subprocess.Popen([CONDBOOK, *args], **{'stdout': subprocess.PIPE, 'stderr': subprocess.PIPE, 'text': True, **kw})


@pytest.fixture(scope='module')
def clean_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp('clean')
    p = cli('experiment', *SMALL, '--data', str(photos), '--out', str(out))
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert f'wrote {out}/summary.md' in stdout
    return out


def keys(df): return sorted(zip(df.image, df.measurement, df.eps.astype(str)))


def without_bits(df): return df[df.measurement != 'bitwidth']


def test_every_measurement_kind(clean_run):
    df = load_results(clean_run)
    measured = df[df.measurement != 'unreadable']
    assert set(measured.measurement) == {'estimate', 'local_condition', 'flip_radius', 'parameters', 'bitwidth',
                                        *(f'random_{k}' for k in PERTURBATIONS), *(f'attack_{a}' for a in ATTACKS)}
    saved = json.loads((clean_run/'config.json').read_text())
    assert saved['command'] == 'experiment' and saved['weights_sha256'] is None  # what made the folder, and no checkpoint
    cfg = saved_config(clean_run)
    assert len(measured) == 3 * len(cfg.measurements())
    assert list(df[df.measurement == 'unreadable'].file) == ['n01491361_broken.JPEG']
    assert str(clean_run.parent) not in (clean_run/'results-0-of-1.jsonl').read_text()  # no path of this machine in the rows
    t = per_image_table(measured)
    assert (t.K >= t.activation_bound).all() and (t.activation_bound >= 0.999 * t.local_condition).all()
    assert (t.certified_radius < t.flip_radius).all()
    # no attack and no random perturbation amplifies beyond the bound K(x) of its image (any size, any direction)
    rows = measured.merge(t.K.rename('K_of_image'), left_on='image', right_index=True)
    att, rnd = rows[rows.measurement.str.startswith('attack_')], rows[rows.measurement.str.startswith('random_')]
    assert att.amplification.notna().sum() >= 3 * len(ATTACKS) and rnd.max_amplification.notna().all()
    assert ((att.amplification <= att.K_of_image) | att.amplification.isna()).all()
    assert (rnd.max_amplification <= rnd.K_of_image).all()
    assert list(t.label) == [0, 1, 2]
    summary = (clean_run/'summary.md').read_text()
    assert 'alexnet (untrained weights)' in summary and 'n01491361_broken.JPEG' in summary and '| local/attack' in summary
    assert 'Minimal safe bits' in summary
    bits = pd.read_csv(clean_run/'bitwidth.csv')
    assert len(bits) == 6 and (bits.bound >= bits.measured).all() and (bits.measured >= 1).all()
    for fig in ('estimates.png', 'amplification.png', 'ratios.png', 'layer_kappa.png', 'radii.png', 'bitwidth.png'):
        assert (clean_run/fig).stat().st_size > 5000, fig


def test_resume_after_kill_9(photos, clean_run, tmp_path):
    out = tmp_path/'killed'
    shard = out/'results-0-of-1.jsonl'
    p = cli('experiment', *FAST, '--data', str(photos), '--out', str(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plan = len(without_bits(load_results(clean_run)).query('image == 0'))  # rows per image
    deadline = time.time() + 300                                           # kill inside image 2: chunk [0, 1] done, image 3 unreadable
    while time.time() < deadline and (not shard.exists() or len(read_rows(shard)) < 2 * plan + 2): time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    partial = len(read_rows(shard))
    assert 2 * plan + 2 <= partial < 3 * plan + 1, 'the kill should land inside image 2'
    res = subprocess.run([CONDBOOK, 'summarize', str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert '- images measured: 2; 1 more in flight, left out' in (out/'summary.md').read_text()
    assert list(pd.read_csv(out/'per_image.csv').image) == [0, 1]
    res = subprocess.run([CONDBOOK, 'summarize', str(out), '--limit', '1'], capture_output=True, text=True)
    assert res.returncode == 0 and '- images measured: 1 (' in (out/'summary.md').read_text()
    p = cli('experiment', *FAST, '--data', str(photos), '--out', str(out))
    _, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    resumed, clean = load_results(out), without_bits(load_results(clean_run))
    raw = read_rows(shard)
    assert len(raw) == len({row_key(r) for r in raw}), 'duplicated rows'
    assert keys(resumed) == keys(clean)
    a, b = per_image_table(resumed[resumed.measurement != 'unreadable']), per_image_table(clean[clean.measurement != 'unreadable'])
    for col in ('K', 'local_condition', 'attack_max', 'random_max', 'flip_radius'):
        pd.testing.assert_series_equal(a[col], b[col], rtol=1e-5)


def test_two_process_sharding(photos, clean_run, tmp_path):
    out = tmp_path/'sharded'
    torchrun = Path(sys.executable).parent/'torchrun'
    res = subprocess.run([str(torchrun), '--standalone', '--nproc_per_node', '2', CONDBOOK, 'experiment', *FAST,
                          '--data', str(photos), '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    shards = [read_rows(out/f'results-{r}-of-2.jsonl') for r in range(2)]
    assert {r['file'] for r in shards[0]} == {'n01440764_a.JPEG', 'n01484850_c.JPEG'}             # rank r takes images r, r + 2, …
    assert {r['file'] for r in shards[1]} == {'n01443537_b.JPEG', 'n01491361_broken.JPEG'}
    merged, clean = load_results(out), without_bits(load_results(clean_run))
    assert keys(merged) == keys(clean)
    a, b = per_image_table(merged[merged.measurement != 'unreadable']), per_image_table(clean[clean.measurement != 'unreadable'])
    pd.testing.assert_series_equal(a.K, b.K, rtol=1e-5)                     # batch-independent measurements agree
    pd.testing.assert_series_equal(a.local_condition, b.local_condition, rtol=1e-2)
    assert (out/'summary.md').exists() and '- images measured: 3' in (out/'summary.md').read_text()


def test_summarize(clean_run):
    "(Bad input to summarize and experiment: tests/test_bad_input.py.)"
    res = subprocess.run([CONDBOOK, 'summarize', str(clean_run)], capture_output=True, text=True)
    assert res.returncode == 0 and 'summary.md' in res.stdout


def test_config_check_extends_older_runs(tmp_path):
    "A run started before a setting existed resumes with it (its rows stay valid); a changed setting is refused."
    from condbook.experiment import check_config
    old = {k: v for k, v in json.loads(json.dumps(ExperimentConfig().__dict__, default=list)).items() if k != 'bitwidth'}
    old['attack_eps'] = {k: list(v) for k, v in ExperimentConfig().attack_eps.items()}
    (tmp_path/'config.json').write_text(json.dumps(old))
    check_config(ExperimentConfig(), tmp_path)
    assert json.loads((tmp_path/'config.json').read_text())['bitwidth'] is True
    with pytest.raises(ValueError, match='bitwidth: True there, False now'): check_config(ExperimentConfig(bitwidth=False), tmp_path)


def test_a_second_process_on_the_same_folder(photos, tmp_path):
    "Two experiment processes on one --out: the second stops at once with one line (the first holds the folder's lock); the first goes on."
    out = tmp_path/'busy'; out.mkdir()
    first = cli('experiment', *FAST, '--data', str(photos), '--out', str(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out/'.condbook-lock-0-of-1').exists(): time.sleep(0.05)
        second = subprocess.run([CONDBOOK, 'experiment', *FAST, '--data', str(photos), '--out', str(out)], capture_output=True, text=True, timeout=120)
        assert first.poll() is None, 'the first process should still be running'
        assert second.returncode == 1 and second.stderr.strip().splitlines()[-1] == (
            f'condbook experiment: error: {out} is in use by another condbook process (PID {first.pid}, condbook experiment): '
            f'wait for it to finish, or, if that process is gone, remove {out}/.condbook-lock-0-of-1'), second.stderr
        assert 'Traceback' not in second.stderr
    finally: first.kill(); first.wait()
