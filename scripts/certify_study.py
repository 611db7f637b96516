#!/usr/bin/env python
"""Certified local sensitivity (`condbook.certify`) over a folder of photos: per image r_lin, the certified radius, the
certified ‖J‖ and the U(r) curve against the attack, next to today's m/(√2 L_f) and the attack's flip radius.

Made for one GPU session of fixed length: photos are taken in a seeded random order (any prefix is a uniform sample), each
certificate is appended to <out>/results.jsonl as soon as it is done, a rerun skips the photos already there, and the run
stops cleanly before --time-budget seconds (it predicts the next photo from the slowest so far). Tables (per_image.csv,
curve.csv) are rewritten at the end. Everything runs under `condbook.core.full_precision()`; the certificate itself is
float64 (see the certify notebook).

    python scripts/certify_study.py --data /path/to/imagenet-sample --device cuda --time-budget 150

Flip radii and L_f come from a finished `condbook experiment` run on the same photos (--experiment, matched by file name);
the photos it measured are taken first (in the seeded order), the others after them with the flip radius left empty; without
an experiment, L_f is computed here.
"""
import argparse, faulthandler, json, math, os, random, signal, sys, time
from pathlib import Path
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's condbook, wherever the command runs
from condbook.data import default_data  # $CONDBOOK_DATA, else ../shared/data/imagenet-sample
from condbook.certify import Certifier
from condbook.core import full_precision, precision_info, release_memory, save_csv
from condbook.data import image_folder
from condbook.models import load_model, pixel_transform

KEEP = ('r_lin', 'r_lin_layer', 'r_lin_sharp', 'closest_layer', 'r_decision', 'r_decision_sharp', 'radius_affine', 'radius', 'margin',
        'jacobian_lower', 'jacobian_upper', 'float32_flips', 'tracked_radius', 'random_breaks', 'attack_breaks', 'past_kink_breaks',
        'n_exact', 'exact_norms', 'seconds')


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default=default_data(), help='folder of photos')
    p.add_argument('--model', default='efficientnet_lite0')
    p.add_argument('--weights', default='imagenet')
    p.add_argument('--size', type=int, default=224, help='input crop (H = W)')
    p.add_argument('--out', default=None, help='output folder (default report/certify/<model>-<weights>-<size>-<data folder name>)')
    p.add_argument('--experiment', default=None, help='a condbook experiment folder with flip radii and L_f for these photos (default '
                   'report/experiments/<model>-<weights>-<size>-<data folder name>, or without the data folder name, when it exists)')
    p.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    p.add_argument('--limit', type=int, default=None, help='at most this many photos (in the seeded order)')
    p.add_argument('--time-budget', type=float, default=math.inf, help='seconds after which no new photo is started; stops cleanly')
    p.add_argument('--seed', type=int, default=0, help='order of the photos')
    p.add_argument('--grid', type=int, default=8, help='U(r) at r_lin·2^(k/2), k < grid')
    p.add_argument('--radii', type=float, nargs='*', default=[1e-3], help='absolute radii of the curve besides the grid, in pixel space (Avant & Morgansen use 1e-3 in the normalised space: about 2.2e-4 in pixels, see scripts/am_compare.py)')
    p.add_argument('--max-exact', type=int, default=512, help='exact gradient norms per image and search (region, decision, tracking); more reaches further past r_lin: on untrained AlexNet at 64x64, U/attack <= 10 up to 23-128 r_lin at 512 and 90-362 r_lin at 4096 (2.3x the time on a CPU)')
    p.add_argument('--steps', type=int, default=32, help='Lanczos steps per norm bound')
    p.add_argument('--groups', type=int, default=4, help='Lanczos items shared by the prefix bounds')
    p.add_argument('--chunk', type=int, default=32, help='inputs per batched Jacobian product, and radii per masked layer walk (memory: EfficientNet-Lite0 at 224x224 needs more than 20 GB at 32, where the walk takes every radius at once; use 4 on a 24 GB machine)')
    p.add_argument('--patterns', type=int, default=16, help='random points on the sphere of radius r_lin searched for a pattern change')
    p.add_argument('--layer-radii', type=int, default=8, help='grid radii past r_lin where the masked layer product is evaluated, besides --radii (0: only those)')
    p.add_argument('--layer-steps', type=int, default=128, help='Lanczos steps of each masked layer norm')
    return p.parse_args(argv)


def experiment_values(folder)->dict:
    "File name -> flip radius, today's certified radius m/(√2 L_f), L_f, label and prediction, from an experiment's rows."
    out = {}
    for f in sorted(Path(folder).glob('results-*.jsonl')) if folder else []:
        for line in f.read_text().splitlines():
            try: r = json.loads(line)
            except json.JSONDecodeError: continue
            v = out.setdefault(Path(r.get('file') or r.get('path') or '').name, {})   # rows keyed by file (or, older, by path)
            if r['measurement'] == 'flip_radius': v['flip_radius'] = r['flip_radius']
            if r['measurement'] == 'estimate':
                v.update(lipschitz=r['lipschitz'], global_radius=r['certified_radius'], label=r['label'], prediction=r['prediction'])
    return out


def done_names(path)->set:
    "File names already certified in `path` (a torn last line is ignored)."
    names = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try: names.add(json.loads(line)['file'])
            except (json.JSONDecodeError, KeyError): pass
    return names


def memory(device)->str:
    "The peak memory so far: the GPU's (allocated by torch) or the process's (resident)."
    if str(device).startswith('cuda'): return f'peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GB on the GPU'
    import resource
    return f'peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB resident'


def append(path, row):
    with open(path, 'a') as f:
        f.write(json.dumps(row) + '\n'); f.flush(); os.fsync(f.fileno())


def tables(out:Path):
    "per_image.csv and curve.csv from results.jsonl; medians printed."
    rows = [json.loads(l) for l in (out/'results.jsonl').read_text().splitlines() if l.strip()]
    if not rows: return None
    per = pd.DataFrame([{k: v for k, v in r.items() if k != 'curve'} for r in rows])
    curve = pd.DataFrame([dict(file=r['file'], r_lin=r['r_lin'], **c) for r in rows for c in r['curve']])
    save_csv(per, out/'per_image.csv'); save_csv(curve, out/'curve.csv')
    return per, curve


def main(argv=None):
    a = parse(argv)
    faulthandler.register(signal.SIGUSR1)   # kill -USR1 <pid> prints where it is
    tag = f'{a.model}-{a.weights}-{a.size}'
    out = Path(a.out or Path('report/certify')/f'{tag}-{Path(a.data).name}')
    out.mkdir(parents=True, exist_ok=True)
    exp = a.experiment or next((d for d in (Path('report/experiments')/f'{tag}-{Path(a.data).name}', Path('report/experiments')/tag) if d.is_dir()), None)
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if a.device == 'auto' else a.device
    settings = dict(model=a.model, weights=a.weights, size=a.size, seed=a.seed, grid=a.grid, radii=a.radii, max_exact=a.max_exact,
                    steps=a.steps, groups=a.groups, patterns=a.patterns, failure=1e-6, layer_radii=a.layer_radii, layer_steps=a.layer_steps)
    cfg = out/'config.json'
    if cfg.exists() and {k: v for k, v in json.loads(cfg.read_text()).items() if k in settings} != settings:
        sys.exit(f'{cfg} holds other settings: use another --out, or the same settings to resume')
    t0 = time.time()
    net = load_model(a.model, a.weights, device=device)
    images = image_folder(a.data)
    order = list(range(len(images)))
    random.Random(a.seed).shuffle(order)
    done = done_names(out/'results.jsonl')
    known = experiment_values(exp)
    order.sort(key=lambda i: images.paths[i].name not in known)   # photos the experiment measured (flip radii) first, each group in the seeded order
    todo = [i for i in order if images.paths[i].name not in done][:None if a.limit is None else max(0, a.limit - len(done))]
    with full_precision():
        info = precision_info(torch.float64, device)
        cfg.write_text(json.dumps(dict(**settings, data=str(a.data), experiment=str(exp), precision=info, torch=torch.__version__), indent=1, default=str))
        cert = Certifier(net, (3, a.size, a.size), steps=a.steps, groups=a.groups, chunk=a.chunk, max_exact=a.max_exact, layer_steps=a.layer_steps)
        lip = next((v['lipschitz'] for v in known.values() if 'lipschitz' in v), None)   # L_f: one number for every photo
        if lip is None:
            from condbook.estimator import Estimator
            lip = Estimator(net, (3, a.size, a.size)).lipschitz
        transform, times = pixel_transform(crop=a.size), []
        print(f'{len(done)} photos done, {len(todo)} to go; setup {time.time() - t0:.1f}s on {info}', flush=True)
        for i in todo:
            nxt = max(times[1:] or times or [0.])                  # the slowest photo so far (the first one warms the device up)
            if time.time() - t0 + nxt > a.time_budget: print(f'time budget reached after {len(times)} photos', flush=True); break
            t = time.time()
            x = images.load(i, transform)
            if x is None: continue
            v = known.get(images.paths[i].name, {})
            L = v.get('lipschitz', lip)
            flip = v.get('flip_radius')
            row, curve = cert.certify_image(x[None].to(device), radii=a.radii, grid=a.grid, lipschitz=L, patterns=a.patterns,
                                            max_radius=4 * flip if flip else math.inf, layer_radii=a.layer_radii)
            if 'global_radius' not in v:
                with torch.no_grad(): v['global_radius'] = float(cert.gm(x[None].to(device).double()).flatten().topk(2).values.diff().abs()) / (math.sqrt(2) * L)
            append(out/'results.jsonl', dict(file=images.paths[i].name, label=images.labels[i], lipschitz=L, global_radius=v['global_radius'],
                                              flip_radius=flip, **{k: row.get(k) for k in KEEP}, curve=curve))
            times.append(time.time() - t)
            release_memory()                                       # the photo's work arrays handed back before the next one
            print(f"{len(times):4d} {images.paths[i].name}: r_lin {row['r_lin']:.3g} radius {row['radius']:.3g} (global {v['global_radius']:.3g}, "
                  f"flip {flip if flip is None else f'{flip:.3g}'}) ‖J‖ ≤ {row['jacobian_upper']:.4g}  {time.time() - t:.1f}s, {memory(device)}", flush=True)
    res = tables(out)
    if res is not None:
        per, curve = res
        print(f"{len(per)} photos in {out}: medians r_lin {per.r_lin.median():.3g}, certified radius {per.radius.median():.3g}, "
              f"global {per.global_radius.median():.3g}, flip {per.flip_radius.median():.3g}; {time.time() - t0:.0f}s this run", flush=True)


if __name__ == '__main__': main()
