"""Every torchvision classifier at its own size through every part of condbook, one process per model, resumable.

    .venv/bin/python scripts/zoo.py [--out report/zoo] [--limit SECONDS] [--data DIR] [--size PX] [names ...]
    .venv/bin/python scripts/zoo.py --library timm [--out report/zoo-timm] [--limit SECONDS] [names ...]

With --library timm: the smallest architecture of each timm module (family; the list is kept in OUT/families.json),
untrained, at the smallest of 32 and 64 pixels at which it runs; names are timm architectures.
With --size, each model runs at max(PX, the smallest input it accepts) (a multiple of a ViT's patch): a quick pass over the
whole list; a model measured at its own size is not measured again smaller. Models run cheapest first; each writes OUT/<name>.json after every part. A model whose file says `done` is skipped; one that
runs out of time keeps the parts that finished, is marked `stopped` with the limit, and is retried only with a longer limit.
Run it in the background with `nice`; it prints one line per model."""
import argparse, json, os, subprocess, sys, time
from pathlib import Path
from condbook.data import default_data  # $CONDBOOK_DATA, else ../shared/data/imagenet-sample

ROOT = Path(__file__).resolve().parents[1]

def timm_names(out, names, families):
    "'timm/ARCH' for the architectures named, else for each family's smallest (kept in out/families.json)."
    if names: return ['timm/' + n for n in names]
    path = out/'families.json'
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(families(), indent=1))
    return ['timm/' + a for a in json.loads(path.read_text()).values()]

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('names', nargs='*')
    ap.add_argument('--library', choices=('torchvision', 'timm'), default='torchvision')
    ap.add_argument('--out', default=None, help='default: report/zoo, or report/zoo-timm')
    ap.add_argument('--limit', type=int, default=3 * 3600, help='seconds per model')
    ap.add_argument('--size', type=int, default=None, help='input side (default: each model its own)')
    ap.add_argument('--data', default=default_data())
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from condbook.zoo import cheapest_first, family, own_size, smallest_size, timm_families
    timm = args.library == 'timm'
    args.out = args.out or str(ROOT/'report'/('zoo-timm' if timm else 'zoo'))
    if timm: args.names = timm_names(Path(args.out), args.names, timm_families)
    def side(name):
        if timm: return smallest_size(name)
        if args.size is None: return own_size(name)
        s, patch = max(args.size, smallest_size(name)), int(name.rsplit('_', 1)[1]) if family(name) == 'vision_transformer' else 1
        return -(-s // patch) * patch
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    data = args.data if Path(args.data).is_dir() else None
    print(f'photo: the first of {data or "scikit-image (no folder " + args.data + ")"}', flush=True)
    for name in cheapest_first(args.names or None):
        path = out/f'{Path(name).name}.json'
        row = json.loads(path.read_text()) if path.exists() else {}
        size = side(name)
        if row.get('done') and row.get('size', 0) >= size or row.get('stopped', 0) >= args.limit and row.get('size') == size: continue
        if row and not row.get('done') or row.get('size', size) != size: path.unlink()  # a partial or smaller row is measured again
        t0 = time.time()
        code = f"from condbook.zoo import run_zoo; run_zoo({str(out)!r}, [{name!r}], size={size}, data={data!r})"
        try: rc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, timeout=args.limit).returncode
        except subprocess.TimeoutExpired: rc = 'timeout'
        row = json.loads(path.read_text()) if path.exists() else {'model': name, 'size': size}
        if not row.get('done'):
            row['stopped'] = args.limit if rc == 'timeout' else row.get('stopped', 0)
            row['stopped_reason'] = f'ran out of time after {args.limit} s' if rc == 'timeout' else f'the process exited with {rc}'
            path.write_text(json.dumps(row))
        print(f'{name}: {"done" if row.get("done") else row["stopped_reason"]} in {time.time() - t0:.0f} s', flush=True)

if __name__ == '__main__': main()
