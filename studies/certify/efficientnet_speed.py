#!/usr/bin/env python
"""How long does certifying one photo take on the pretrained EfficientNet-Lite0 at 224×224 on this CPU, and where does the time go?

One photo (the first of the certify study, n01756291_sidewinder.JPEG), the settings of `scripts/certify_study.py` (grid 8, the
radius 1e-3, 512 exact norms, chunk 32, 4 Lanczos groups, 16 pattern samples, 8 layer radii, its flip radius ×4 as the largest
radius) but chunk 4 (--chunk): at the study's 32 the process needs more than the 23 GB of this machine at 224×224. Writes the certificate, the seconds and the host synchronisations of the call (`condbook.core.counting_syncs`) to
--out as JSON; with --profile, the 40 costliest functions (cProfile, cumulative) beside it; with --compare, checks that every
radius and bound equals an earlier run's within float noise (relative 1e-9).

    OMP_NUM_THREADS=1 .venv/bin/python studies/certify/efficientnet_speed.py --out /tmp/speed.json [--profile] [--compare OLD.json]
"""
import argparse, cProfile, io, json, math, os, pstats, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # this checkout's condbook
from condbook.certify import Certifier
from condbook.core import counting_syncs, full_precision
from condbook.data import image_folder
from condbook.models import load_model, pixel_transform

PHOTO, FLIP = 'n01756291_sidewinder.JPEG', 0.1874997615814209   # the study's first photo and its flip radius
KEYS = ('r_lin', 'r_decision', 'radius_affine', 'radius', 'margin', 'jacobian_lower', 'jacobian_upper', 'tracked_radius')


def certify_photo(data, profile=False, size=224, chunk=4):
    "(row, curve, seconds, host synchronisations, profile text or None) of one certify_image call."
    net = load_model('efficientnet_lite0', 'imagenet')
    images = image_folder(data)
    x = images.load(next(i for i, p in enumerate(images.paths) if p.name == PHOTO), pixel_transform(crop=size))[None]
    with full_precision():
        cert = Certifier(net, (3, size, size), groups=4, chunk=chunk, max_exact=512)
        prof = cProfile.Profile() if profile else None
        with counting_syncs() as syncs:
            t = time.perf_counter()
            if prof: prof.enable()
            row, curve = cert.certify_image(x, radii=[1e-3], grid=8, max_radius=4 * FLIP, patterns=16, layer_radii=8)
            if prof: prof.disable()
            seconds = time.perf_counter() - t
    text = None
    if prof:
        s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats('cumulative').print_stats(40); text = s.getvalue()
    return row, curve, seconds, syncs[0], text


def same(a, b, rtol=1e-9)->bool:
    "Whether two numbers agree within relative `rtol` (both infinite or NaN count as equal)."
    if a is None or b is None: return a is b
    if not (math.isfinite(a) and math.isfinite(b)): return a == b or (math.isnan(a) and math.isnan(b))
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def compare(new:dict, old:dict)->list:
    "The differences (key, new, old) between two runs' certificates and curves."
    bad = [(k, new['row'].get(k), old['row'].get(k)) for k in KEYS if not same(new['row'].get(k), old['row'].get(k))]
    if len(new['curve']) != len(old['curve']): return bad + [('curve rows', len(new['curve']), len(old['curve']))]
    for i, (c, d) in enumerate(zip(new['curve'], old['curve'])):
        bad += [(f'curve[{i}].{k}', c[k], d[k]) for k in ('radius', 'U') if not same(c[k], d[k])]
    return bad


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', default=os.environ.get('CONDBOOK_DATA', '/work/wt/shared/data/imagenet-sample'))
    p.add_argument('--out', required=True, help='JSON file for the result')
    p.add_argument('--profile', action='store_true', help='run under cProfile and write <out>.profile.txt')
    p.add_argument('--compare', default=None, help='an earlier --out to compare the radii and bounds with')
    p.add_argument('--size', type=int, default=224, help='input crop (a smaller one for a quick profile)')
    p.add_argument('--chunk', type=int, default=4, help="Certifier's chunk (the study's 32 needs more than the 23 GB here at 224×224)")
    a = p.parse_args(argv)
    row, curve, seconds, syncs, text = certify_photo(a.data, a.profile, a.size, a.chunk)
    res = dict(photo=PHOTO, size=a.size, chunk=a.chunk, seconds=seconds, host_syncs=syncs, threads=torch.get_num_threads(), torch=torch.__version__,
               row={k: v for k, v in row.items() if isinstance(v, (int, float, str, bool)) or v is None}, curve=curve)
    Path(a.out).write_text(json.dumps(res, indent=1, default=str))
    if text: Path(a.out + '.profile.txt').write_text(text)
    print(f"{PHOTO}: {seconds:.1f} s, {syncs} host synchronisations, {res['threads']} threads; radius {row['radius']:.6g} "
          f"({row.get('method')}), r_lin {row['r_lin']:.6g}", flush=True)
    if a.compare:
        bad = compare(res, json.loads(Path(a.compare).read_text()))
        print('same radii and bounds as', a.compare if not bad else f'DIFFERENT from {a.compare}: {bad[:5]}')
        if bad: sys.exit(1)


if __name__ == '__main__': main()
