"""The offline documentation preview, opened page by page in headless Chromium.

Screenshots of the estimator page and of the EfficientNet-Lite0 experiment page go to $CONDBOOK_TEST_OUT (default: test-output/).
"""
import functools, http.server, os, shutil, subprocess, sys, threading
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
PUBLIC = ['operator_norm', 'Estimator', 'local_condition', 'certify', 'random_amplification', 'attack_amplification', 'predict_bits', 'measure_bits']
MATH_PAGES = ['00_norms', '01_estimator', '01a_certify', '02_perturbations', '03_attacks', '04_bitwidth']
EXPERIMENTS = ['experiments/alexnet_imagenet', 'experiments/vgg19_imagenet', 'experiments/efficientnet_lite0_imagenet']


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "Build the preview and serve it over HTTP on localhost; yield (base URL, page paths)."
    out = tmp_path_factory.mktemp('preview')
    res = subprocess.run([sys.executable, str(ROOT/'scripts'/'preview.py'), '--out', str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    pages = [l.split()[0] for l in res.stdout.splitlines() if l.endswith('KiB')]
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(out))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_port}/', pages
    server.shutdown()


def test_preview_lists_every_notebook_in_sidebar_order(site):
    _, pages = site
    assert pages[:7] == ['index.html', '00_norms.html', '01_estimator.html', '01a_certify.html', '02_perturbations.html', '03_attacks.html',
                         '04_bitwidth.html']
    assert pages[7:10] == [e + '.html' for e in EXPERIMENTS] and pages[-1] == '07_cli.html'
    assert len(pages) == len(list((ROOT/'nbs').glob('**/[0-9a-z]*.ipynb')))


def test_pages_in_chromium(site):
    if CHROMIUM is None:
        pytest.skip('headless Chromium not found (Debian: apt-get install chromium chromium-driver): browser test skipped')
    from playwright.sync_api import sync_playwright
    base, pages = site
    shots = Path(os.environ.get('CONDBOOK_TEST_OUT', ROOT/'test-output')); shots.mkdir(parents=True, exist_ok=True)
    headings = set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
        page = browser.new_page(viewport={'width': 1280, 'height': 900})
        errors = []
        page.on('console', lambda m: errors.append(f'{m.type}: {m.text}') if m.type == 'error' else None)
        page.on('pageerror', lambda e: errors.append(f'page error: {e}'))
        page.on('response', lambda r: errors.append(f'HTTP {r.status}: {r.url}') if r.status >= 400 else None)
        for path in pages:
            errors.clear()
            page.goto(base + path, wait_until='load')
            if page.evaluate('typeof MathJax !== "undefined"'):  # wait until MathJax has typeset the page
                page.evaluate('() => new Promise(done => MathJax.Hub.Queue(() => done(true)))')
            assert not errors, (path, errors)
            text = page.inner_text('body')
            assert '$$' not in text, f'{path}: unrendered display math'
            name = path.removesuffix('.html')
            if name in MATH_PAGES: assert page.locator('.MathJax, .MathJax_Display, mjx-container').count() > 10, f'{path}: no typeset math'
            if name in EXPERIMENTS:
                sizes = page.eval_on_selector_all('main img, .jp-Notebook img', 'els => els.map(e => [e.naturalWidth, e.naturalHeight])')
                assert len(sizes) >= 6 and all(w > 100 and h > 100 for w, h in sizes), (path, sizes)
            headings |= set(page.locator('h2, h3, h4').all_inner_texts())
            if name in ('01_estimator', 'experiments/efficientnet_lite0_imagenet'):
                page.screenshot(path=str(shots/(Path(name).name + '.png')), full_page=False)
        browser.close()
    names = {h.strip().split('(')[0].strip() for h in headings}
    assert set(PUBLIC) <= names, set(PUBLIC) - names
    assert all((shots/f).stat().st_size > 20_000 for f in ('01_estimator.png', 'efficientnet_lite0_imagenet.png'))
