#!/usr/bin/env python
"""The bit-width study of EfficientNet-Lite0 on labelled ImageNet photos (condbook.bitwidth.bitwidth_study).

Splits the photos (sorted by name) by a seeded permutation into calibration photos (default 200) and evaluation photos (the rest),
then runs, or resumes, the study into report/bitwidth/<run>/: config.json, allocations.csv, allocation-sensitivities.json,
rows/<first image>.csv.gz (one per batch of evaluation photos: per photo, setting, target and width, the predicted probability
of keeping the top-1 class and the class obtained), the summary tables tables/*.csv, and timing-<date>.json per run. Small files only.

On a GPU (the whole study on 800 photos):

    python scripts/bitwidth_study.py --device cuda --data .gpu/photos-800 --run efficientnet_lite0-imagenet-800

Layer constants are computed when the estimator is built unless found in the cache ($CONDBOOK_CACHE, default ~/.cache/condbook;
content-keyed, the same on every device): carrying a filled cache along saves that time.

A small check on a CPU:

    OMP_NUM_THREADS=2 python scripts/bitwidth_study.py --limit 24 --calibration 8 --run cpu-check
"""
import argparse, json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import torch
from condbook.data import default_data  # $CONDBOOK_DATA, else ../shared/data/imagenet-sample

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=default_data(), help='folder of labelled photos')
    p.add_argument('--run', default='efficientnet_lite0-imagenet-800', help='name of the results folder under --report')
    p.add_argument('--report', default='report/bitwidth', help='where the results folders are')
    p.add_argument('--calibration', type=int, default=200, help='how many photos calibrate (kept apart from the evaluation photos)')
    p.add_argument('--seed', type=int, default=0, help='seed of the split')
    p.add_argument('--limit', type=int, default=None, help='use only the first N photos (sorted by name)')
    p.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'auto'")
    p.add_argument('--batch-size', type=int, default=None, help='evaluation photos per batch (one results file each); default 100 on a GPU, 8 on a CPU')
    p.add_argument('--widths', default='2-16', help='integer widths of the agreement curves, as lo-hi')
    p.add_argument('--hessian-images', type=int, default=None, help='calibration photos of the Hessian traces (default: bitwidth_study\'s)')
    p.add_argument('--hessian-samples', type=int, default=None, help="Rademacher vectors of Hutchinson's estimator (default: bitwidth_study's)")
    a = p.parse_args(argv)
    from condbook.bitwidth import bitwidth_study, study_split
    from condbook.core import atomic_write
    from condbook.data import image_folder
    from condbook.estimator import Estimator
    from condbook.models import load_model
    t0 = time.time()
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if a.device == 'auto' else a.device
    batch_size = a.batch_size or (100 if device.startswith('cuda') else 8)
    lo, hi = (int(v) for v in a.widths.split('-'))
    model = load_model('efficientnet_lite0', 'imagenet', device=device)
    images = image_folder(a.data, a.limit)
    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:  # decoding and resizing release the GIL: photos read side by side
        loaded = list(pool.map(lambda i: images.load(i, model.transform), range(len(images))))
    idx = [i for i, v in enumerate(loaded) if v is not None]  # unreadable photos are skipped (listed in images.skipped)
    x, y = torch.stack([loaded[i] for i in idx]).to(device), torch.tensor([images.labels[i] for i in idx])
    names = [Path(images.paths[i]).name for i in idx]
    cal, ev = study_split(len(x), a.calibration, a.seed)
    t_read = time.time() - t0
    print(f'{len(x)} photos read in {t_read:.0f} s: {len(cal)} calibrate, {len(ev)} evaluate, on {device}', flush=True)
    out = Path(a.report)/a.run
    t_est = time.time()
    est = Estimator(model, model.input_shape)  # layer constants: from the cache, else computed (on the device)
    t1, done, t_est = time.time(), False, time.time() - t_est
    try:  # the rows are saved batch by batch inside; the timing is written even if something fails later
        tables = bitwidth_study(est, x[ev.to(device)], y[ev], x[cal.to(device)], y[cal], out, names=[names[i] for i in ev],
                                widths=range(lo, hi + 1), batch_size=batch_size,
                                **{k: v for k, v in dict(hessian_images=a.hessian_images, hessian_samples=a.hessian_samples).items() if v is not None})
        done = True
    finally:
        timing = dict(device=torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu', photos=len(x), read_s=round(t_read, 1), estimator_s=round(t_est, 1),
                      study_s=round(time.time() - t1, 1), total_s=round(time.time() - t0, 1), threads=torch.get_num_threads(),
                      cpu_s=round(time.process_time(), 1), finished=done)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out/f"timing-{time.strftime('%Y%m%d-%H%M%S')}.json", lambda tmp: tmp.write_text(json.dumps(timing, indent=1)))
        print(json.dumps(timing), flush=True)
    (out/'tables').mkdir(exist_ok=True)
    for k, v in tables.items():
        if k != 'rows' and v is not None: v.to_csv(out/'tables'/f'{k}.csv')
    print(tables['curves'].to_string(), flush=True)
    print(tables['comparison'].to_string(), flush=True)

if __name__ == '__main__': sys.exit(main())
