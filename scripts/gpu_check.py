"""The GPU check: every measurement of the tightness study on a few photos on the GPU and on the CPU, compared within the
tolerances condbook promises; then `bench` on the GPU for VGG-19 and EfficientNet-Lite0, and the full study's seconds per
image. Writes one JSON file. Run it through scripts/gpu_check.sh (which says how to bring the packages a GPU image lacks)."""
import argparse, json, math, os, platform, sys, tempfile, time, warnings
from pathlib import Path
import torch

# measurement prefix -> (kind, tolerance); kind 'rel': |a-b|/|b|, 'abs': |a-b|; None: reported, not checked. The deterministic
# attacks (FGSM, Carlini-Wagner) are checked; PGD and the output-distortion attack start from a random point drawn by the device's
# own generator (CUDA and CPU streams differ), so like the random perturbations and parameter draws they are reported only.
TOLERANCES = {
    'estimate': ('rel', 1e-3), 'local_condition': ('rel', 1e-3), 'bitwidth': ('abs', 1), 'attack_fgsm': ('rel', 0.05),
    'attack_cw_l2': ('rel', 0.05), 'attack_': None, 'random_': None, 'parameters': None, 'flip_radius': None}


def flat(d, prefix=''):
    "The numeric leaves of a nested dict/list as {dotted key: float}."
    if isinstance(d, dict): return {k: v for kk, vv in d.items() for k, v in flat(vv, f'{prefix}{kk}.').items()}
    if isinstance(d, (list, tuple)): return {k: v for i, vv in enumerate(d) for k, v in flat(vv, f'{prefix}{i}.').items()}
    if isinstance(d, bool) or d is None or isinstance(d, str): return {}
    return {prefix.rstrip('.'): float(d)}


def difference(kind, a, b):
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b): return 0. if (a == b or (math.isnan(a) and math.isnan(b))) else math.inf
    return abs(a - b) if kind == 'abs' else abs(a - b) / max(abs(b), 1e-300)


def rule(name):
    return next((r for p, r in TOLERANCES.items() if name.startswith(p)), ('rel', 1e-3))


def compare(cpu:dict, gpu:dict)->dict:
    "Per measurement: the largest difference over images and values, the value where it occurs, and whether it is within tolerance."
    out = {}
    for key in cpu:
        r = rule(key)
        kind, tol = r if r else ('rel', None)
        worst, where = 0., None
        for b, (rc, rg) in enumerate(zip(cpu[key], gpu[key])):
            fc, fg = flat(rc), flat(rg)
            if key == 'estimate': fc = {k: v for k, v in fc.items() if not k.startswith('kappa.')} | {'kappa(max over layers)': max(flat(rc['kappa']).values(), default=0)}; fg = {k: v for k, v in fg.items() if not k.startswith('kappa.')} | {'kappa(max over layers)': max(flat(rg['kappa']).values(), default=0)}
            if key.startswith('attack_'): fc, fg = {k: v for k, v in fc.items() if k == 'amplification'}, {k: v for k, v in fg.items() if k == 'amplification'}
            for k in fc.keys() & fg.keys():
                d = difference(kind, fg[k], fc[k])
                if d > worst or where is None: worst, where = d, f'image {b} {k}: cpu {fc[k]:.6g} gpu {fg[k]:.6g}'
        out[key] = dict(kind=kind, tolerance=tol, worst=worst, where=where, ok=None if tol is None else bool(worst <= tol))
    return out


def run_measurements(cfg, device, x, y):
    "{measurement key: rows} of every measurement of `cfg` on the batch, and seconds per image of each."
    from condbook.experiment import Context, measure
    ctx = Context(cfg, device)
    rows, secs = {}, {}
    for m, e in cfg.measurements():
        key = m if e is None else f'{m} {e:g}'
        if device != 'cpu': torch.cuda.synchronize()
        t = time.perf_counter()
        rows[key] = measure(ctx, m, e, x, y, cfg.seed)
        if device != 'cpu': torch.cuda.synchronize()
        secs[key] = (time.perf_counter() - t) / len(x)
        print(f'  {device:4} {key:32} {secs[key]:.3f} s/image', flush=True)
    return rows, secs


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--out', default='gpu_check.json')
    p.add_argument('--data', default=os.environ.get('CONDBOOK_DATA'), help='labelled image folder (default: scikit-image photographs)')
    p.add_argument('--images', type=int, default=8, help='photos compared between GPU and CPU')
    p.add_argument('--study-images', type=int, default=64, help='photos of the timed full study on the GPU')
    p.add_argument('--batch-size', type=int, default=32, help='batch size of the timed study')
    p.add_argument('--device', default='cuda', help="'cuda' (a smoke test on a machine without one: 'cpu')")
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--model', default='efficientnet_lite0', help='model of the comparison and the study (its pretrained weights)')
    p.add_argument('--weights', default='imagenet')
    p.add_argument('--bench-models', nargs='+', default=['vgg19', 'efficientnet_lite0'])
    p.add_argument('--bench-size', type=int, default=224)
    p.add_argument('--power-cap', type=int, default=3, help="bench's power iteration stops at this multiple of Lanczos (the ratio goal is 3)")
    a = p.parse_args()
    warnings.simplefilter('ignore')
    from condbook.core import precision_info
    from condbook.cli import bench
    from condbook.data import image_folder, sample_images
    from condbook.experiment import ExperimentConfig, run_experiment, load_results, timing_table
    from condbook.models import pixel_transform
    if a.device == 'cuda' and not torch.cuda.is_available(): sys.exit('gpu_check: no CUDA device visible to torch')
    t0 = time.time()
    R = dict(started=time.strftime('%Y-%m-%d %H:%M:%S'), torch=torch.__version__, python=platform.python_version(),
             device=precision_info(torch.float32, a.device), cpu_threads=torch.get_num_threads())
    save = lambda: Path(a.out).write_text(json.dumps(R, indent=1, default=str))
    # 1. the same measurements on the GPU and on the CPU
    cfg = ExperimentConfig(model=a.model, weights=a.weights, data=a.data, size=a.size, batch_size=a.images)
    images = image_folder(a.data, a.images) if a.data else sample_images(a.images)
    tf = pixel_transform(crop=a.size)
    x = torch.stack([images.load(i, tf) for i in range(len(images))]); y = torch.tensor(images.labels)
    print(f'1. every measurement of the study, {cfg.label}, {len(x)} photos at {a.size}×{a.size}: GPU, then CPU', flush=True)
    gpu_rows, gpu_secs = run_measurements(cfg, a.device, x, y)
    cpu_rows, cpu_secs = run_measurements(cfg, 'cpu', x, y)
    R['comparison'] = compare(cpu_rows, gpu_rows)
    R['comparison_seconds_per_image'] = {k: dict(gpu=round(gpu_secs[k], 4), cpu=round(cpu_secs[k], 4)) for k in gpu_secs}
    R['comparison_ok'] = all(v['ok'] for v in R['comparison'].values() if v['ok'] is not None)
    save()
    # 2. bench on the GPU
    R['bench'] = {}
    for model in a.bench_models:
        print(f'2. condbook bench --model {model} --device {a.device} --power-cap {a.power_cap}', flush=True)
        r = bench(model, size=a.bench_size, device=a.device, power_cap=a.power_cap)
        R['bench'][model] = {k: v for k, v in r.items() if k != 'layers'}
        save()
    # 3. the full study's seconds per image on the GPU
    print(f'3. the full study on {a.study_images} photos, batch {a.batch_size}, on {a.device}', flush=True)
    with tempfile.TemporaryDirectory() as out:
        study = ExperimentConfig(model=a.model, weights=a.weights, data=a.data, size=a.size, batch_size=a.batch_size)
        t = time.time(); run_experiment(study, out, a.study_images, a.device, summarize_at_end=False, progress=False); wall = time.time() - t
        df = load_results(out)
        n = df[df.measurement != 'unreadable'].image.nunique()
        R['study'] = dict(label=study.label, images=n, batch_size=a.batch_size, wall_seconds=round(wall, 1),
                          seconds_per_image_wall=round(wall / n, 4),
                          seconds_per_image_by_measurement=timing_table(df)['seconds per image'].round(4).to_dict())
        R['study']['seconds_per_image_sum'] = round(sum(R['study']['seconds_per_image_by_measurement'].values()), 4)
    R['seconds'] = round(time.time() - t0, 1)
    save()
    print(json.dumps({k: R[k] for k in ('device', 'comparison_ok', 'seconds')}, indent=1))
    print('study seconds per image (wall):', R['study']['seconds_per_image_wall'])
    for k, v in R['comparison'].items(): print(f"  {k:32} {v['kind']} worst {v['worst']:.3g} (tol {v['tolerance']}) {'' if v['ok'] is None else 'ok' if v['ok'] else 'FAIL'}  {v['where']}")
    print(f'wrote {a.out}')


if __name__ == '__main__': main()
