"""The documentation: every page keeps its introduction, signatures read right, and the offline preview in headless Chromium.

The notebooks' own checks run first (no browser): each opens with a cell of `# Title` and `> summary` only and then a
Markdown cell of its own (nbdev turns the first cell into front matter and drops anything else in it), and the API's
signatures carry each parameter's comment on that parameter. Then the preview is built (`scripts/preview.py`: nbdev's
processing into _proc/, then HTML) and checked twice: in _proc/ (the introduction survives the processing, as Quarto
would receive it) and page by page in Chromium: no console error, math typeset, the introduction under the summary, no
code line cut off, every figure drawn, one H1, no noise (download logs, this machine's paths, Python reprs of output),
classes shown as classes, and the table of contents and previous/next links.
Screenshots of the estimator page and of the EfficientNet-Lite0 experiment page go to $CONDBOOK_TEST_OUT (default:
test-output/).
"""
import functools, http.server, urllib.request, importlib, inspect, json, os, re, shutil, subprocess, sys, threading
from pathlib import Path
import pytest
from fastcore.docments import docments

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
PUBLIC = ['operator_norm', 'Estimator', 'local_condition', 'certify', 'random_amplification', 'attack_amplification', 'predict_bits',
          'measure_bits']
MATH_PAGES = ['00_norms', '01_estimator', '01a_certify', '02_perturbations', '03_attacks', '04b_formats', '04c_calibration',
              '04d_sensitivity', '04e_roundoff', '04g_allocation']
BITWIDTH_LESSONS = ['04b_formats', '04c_calibration', '04d_sensitivity', '04e_roundoff', '04f_agreement', '04g_allocation',
                    '04h_bitstudy']
EXPERIMENTS = ['experiments/alexnet_imagenet', 'experiments/vgg19_imagenet', 'experiments/efficientnet_lite0_imagenet']
NOTEBOOKS = sorted(p.relative_to(NBS).as_posix() for p in NBS.glob('**/[0-9a-z]*.ipynb'))
# every signature puts its last parameter's comment on the parameter and every public symbol has a docstring: nothing pending
PENDING_SIGNATURES, PENDING_DOCSTRINGS = set(), set()


def cells(page:str)->list: return json.loads((NBS/page).read_text())['cells']
def source(c:dict)->str: return ''.join(c['source'])


def opening(nb_cells:list)->tuple:
    "(the title cell's source, the source of the cell after it or None) of a notebook's cells."
    i = next(i for i, c in enumerate(nb_cells) if c['cell_type'] == 'markdown')
    after = nb_cells[i + 1] if i + 1 < len(nb_cells) and nb_cells[i + 1]['cell_type'] == 'markdown' else None
    return source(nb_cells[i]), after and source(after)


def words(markdown:str, n=6)->list:
    "The first `n` words of prose in `markdown` (math, code, links' targets and markup left out)."
    text = re.sub(r'\$\$.*?\$\$|\$[^$]*\$|`[^`]*`|\]\([^)]*\)|<[^>]+>', ' ', markdown, flags=re.S)
    return re.findall(r'[A-Za-z]{3,}', text)[:n]


def in_order(ws:list, text:str)->bool:
    "Whether the words `ws` appear in `text` in this order."
    pos = 0
    for w in ws:
        pos = text.find(w, pos)
        if pos < 0: return False
        pos += len(w)
    return True


def first_paragraph(markdown:str)->str: return markdown.strip().split('\n\n')[0]


@pytest.mark.parametrize('page', NOTEBOOKS)
def test_first_cell_holds_title_and_summary_only_and_an_introduction_follows(page):
    head, intro = opening(cells(page))
    lines = [l for l in head.strip().splitlines() if l.strip()]
    assert len(lines) == 2 and lines[0].startswith('# ') and lines[1].startswith('> '), (
        f'{page}: the first Markdown cell must hold `# Title` and a one-line `> summary` only (nbdev drops the rest '
        f'from the page): move the rest into a Markdown cell of its own:\n{head[:500]}')
    assert intro and not intro.lstrip().startswith('#') and len(words(first_paragraph(intro))) >= 6, (
        f'{page}: the cell after the title must be a Markdown introduction, a paragraph of what the page builds and why')


def documented_symbols():
    "Every public function, class and method of the package that the API pages document, by full name."
    from condbook._modidx import d
    for mod, syms in d['syms'].items():
        if mod == 'condbook.showdoc' or mod.split('.')[-1].startswith('_'): continue
        m = importlib.import_module(mod)
        for name in syms:
            parts = name[len(mod) + 1:].split('.')
            if any(p.startswith('_') for p in parts): continue
            o = m
            for p in parts: o = getattr(o, p)
            yield name, o


def misplaced_comment(o)->bool:
    "Whether the return annotation carries a comment while the last parameter has none: the comment belongs to it."
    try: d = docments(o, full=True, args_kwargs=True)  # as `condbook.showdoc.Renderer` reads them
    except Exception: return False
    params = [k for k in d if k not in ('return', 'self')]
    return bool(d.get('return', {}).get('docment')) and bool(params) and not d[params[-1]].get('docment')


def test_signatures_comment_each_parameter_and_every_symbol_has_a_docstring():
    from condbook.showdoc import own_docstring
    syms = dict(documented_symbols())
    assert len(syms) > 50
    misplaced = {n for n, o in syms.items() if callable(o) and misplaced_comment(o)}
    undocumented = {n for n, o in syms.items() if callable(o) and not own_docstring(o)}
    assert misplaced <= PENDING_SIGNATURES, ('put the last parameter\'s comment before the closing parenthesis, not after '
                                              f'`)->T:`', sorted(misplaced - PENDING_SIGNATURES))
    assert undocumented <= PENDING_DOCSTRINGS, ('a one-line docstring each', sorted(undocumented - PENDING_DOCSTRINGS))
    assert not PENDING_SIGNATURES - misplaced and not PENDING_DOCSTRINGS - undocumented, (
        'fixed: delete from PENDING_*', sorted((PENDING_SIGNATURES - misplaced) | (PENDING_DOCSTRINGS - undocumented)))


def test_show_doc_renders_classes_as_classes():
    from nbdev.config import get_config
    from nbdev.showdoc import show_doc
    from condbook.estimator import Layer, local_condition
    assert get_config().get('renderer') == 'condbook.showdoc.Renderer'
    assert '```python\nclass Layer(\n' in show_doc(Layer)._repr_markdown_()
    assert '```python\ndef local_condition(\n' in show_doc(local_condition)._repr_markdown_()


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
    ops = ['00c_ops', '00d_affine', '00e_activations', '00f_pooling', '00g_normalisation', '00h_joins', '00i_attention',
           '00j_registry']
    assert pages[:16] == ['index.html', 'your_model.html', '00_norms.html'] + [p + '.html' for p in ops] + [
        '01_estimator.html', '01a_certify.html', '02_perturbations.html', '03_attacks.html', '04_bitwidth.html']
    assert pages[16:23] == [n + '.html' for n in BITWIDTH_LESSONS]
    assert pages[23:27] == [e + '.html' for e in EXPERIMENTS] + ['09_zoo.html'] and pages[-1] == '07_cli.html'
    assert sorted(p.replace('.html', '.ipynb') for p in pages) == NOTEBOOKS


def test_mathjax_is_configured_before_it_loads(site):
    "A configuration block after MathJax.js races its start-up: lost on a busy machine, MathJax asks for fonts not shipped."
    base, pages = site
    for path in pages:
        html = urllib.request.urlopen(base + path).read().decode()
        config, load = html.find('type="text/x-mathjax-config"'), html.find('mathjax/MathJax.js?config=')
        assert 0 <= config < load, f'{path}: MathJax configuration at {config}, loader at {load}'


def test_quarto_configuration_is_one_file():
    "nbdev reads nbs/_quarto.yml, the design keeps it at the root: one file, both paths."
    assert (NBS/'_quarto.yml').resolve() == (ROOT/'_quarto.yml').resolve()
    sys.path.insert(0, str(ROOT/'scripts'))
    try: from preview import site_config
    finally: sys.path.pop(0)
    cfg = site_config()
    assert cfg['website']['title'] == 'condbook' and cfg['format']['html']['toc'] and cfg['website']['sidebar']['contents']


def test_processed_notebooks_keep_the_introduction(site):
    "In _proc/ (what Quarto renders), the page's first paragraph after the front matter is the notebook's introduction."
    for page in NOTEBOOKS:
        proc = json.loads((ROOT/'_proc'/page).read_text())['cells']
        assert proc[0]['cell_type'] == 'raw' and source(proc[0]).startswith('---'), page
        md = [source(c) for c in proc[1:] if c['cell_type'] == 'markdown' and 'AUTOGENERATED' not in source(c)]
        _, intro = opening(cells(page))
        first = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', first_paragraph(md[0]))  # nbdev links names to their docs
        assert in_order(words(first_paragraph(intro)), first), (page, first[:300])


CLIPPED_CODE = """() => {  // code blocks whose lines run past what is shown with no way to scroll to them
  const bad = [];
  for (const e of document.querySelectorAll('main pre')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0) continue;
    const ox = getComputedStyle(e).overflowX;
    if (e.scrollWidth > e.clientWidth + 1 && !['auto', 'scroll'].includes(ox)) { bad.push(e.innerText.slice(0, 80)); continue; }
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement)
      if (getComputedStyle(a).overflowX !== 'visible' && r.right > a.getBoundingClientRect().right + 1) {
        bad.push(e.innerText.slice(0, 80)); break; }
  }
  if (document.documentElement.scrollWidth > innerWidth + 1) bad.push('the page scrolls sideways');
  return bad;
}"""

FIRST_AFTER_SUMMARY = """() => {  // the text of the first paragraph or list that follows the summary under the title
  const q = document.querySelector('main h1 ~ blockquote, main blockquote');
  if (!q) return null;
  const e = [...document.querySelectorAll('main p, main ul, main ol')].find(
    e => !q.contains(e) && (q.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING));
  return e ? e.innerText : null;
}"""

FIGURES = """() => [...document.querySelectorAll('main img')].map(img => {
  const cell = img.closest('.jp-Cell'), prev = cell && cell.previousElementSibling;
  return {w: img.naturalWidth, h: img.naturalHeight, said: !!prev && prev.classList.contains('jp-MarkdownCell')
          && prev.innerText.trim().length > 40};
})"""

NOISE = [(r'Downloading: "http', 'a download log'), (r'(?<![\w.~-])/(?:work|home|root|tmp|Users|private)/\S+', "this machine's paths"),
         (r'Call self as a function', "an inherited docstring"), (r"^'.*\\n", 'a Python repr of text'),
         (r'\d+/\d+ \[\d\d:\d\d<', 'a progress bar'), (r'\w+Warning: ', 'a warning')]


def figure_count(page:str)->int:
    "Images among the processed notebook's outputs."
    nb = json.loads((ROOT/'_proc'/page).read_text())
    return sum(any(k.startswith('image/') for k in o.get('data', {})) for c in nb['cells'] for o in c.get('outputs', []))


def test_pages_in_chromium(site):
    if CHROMIUM is None:
        pytest.skip('headless Chromium not found (Debian: apt-get install chromium chromium-driver): browser test skipped')
    from playwright.sync_api import sync_playwright
    base, pages = site
    shots = Path(os.environ.get('CONDBOOK_TEST_OUT', ROOT/'test-output')); shots.mkdir(parents=True, exist_ok=True)
    classes = {n.split('.')[-1] for n, o in documented_symbols() if inspect.isclass(o)}
    headings, failures = set(), []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
        page = browser.new_page(viewport={'width': 1400, 'height': 900})
        errors = []
        page.on('console', lambda m: errors.append(f'{m.type}: {m.text}') if m.type == 'error' else None)
        page.on('pageerror', lambda e: errors.append(f'page error: {e}'))
        page.on('response', lambda r: errors.append(f'HTTP {r.status}: {r.url}') if r.status >= 400 else None)
        for path in pages:
            errors.clear()
            page.goto(base + path, wait_until='load')
            if page.evaluate('typeof MathJax !== "undefined"'):  # wait until MathJax has typeset the page
                page.evaluate('() => new Promise(done => MathJax.Hub.Queue(() => done(true)))')
            fail = lambda why: failures.append(f'{path}: {why}')
            if errors: fail(errors)
            name, nb = path.removesuffix('.html'), path.replace('.html', '.ipynb')
            text = page.inner_text('main')
            if '$$' in text: fail('unrendered display math')
            if name in MATH_PAGES and page.locator('.MathJax, .MathJax_Display, mjx-container').count() <= 10:
                fail('no typeset math')
            _, intro = opening(cells(nb))
            shown = page.evaluate(FIRST_AFTER_SUMMARY)
            if not shown or not in_order(words(first_paragraph(intro)), shown):
                fail(f'the introduction is not the first paragraph under the summary: {shown and shown[:200]!r}')
            if clipped := page.evaluate(CLIPPED_CODE): fail(f'code cut off: {clipped[:3]}')
            figures = page.evaluate(FIGURES)
            if len(figures) != figure_count(nb) or not all(f['w'] > 100 and f['h'] > 100 for f in figures):
                fail(f'{figure_count(nb)} figures in the notebook, drawn: {figures}')
            if name in EXPERIMENTS and (len(figures) < 6 or not all(f['said'] for f in figures)):
                fail(f'an experiment page draws its figures, each after a sentence on what to look at: {figures}')
            if (h1 := page.locator('main h1').count()) != 1: fail(f'{h1} H1 headings')
            outputs = '\n'.join(page.locator('.jp-OutputArea-output').all_inner_texts())
            for pattern, what in NOISE:
                where = outputs if what in ('a Python repr of text', 'a progress bar', 'a warning') else text
                if m := re.search(pattern, where, flags=re.M): fail(f'{what}: {m.group(0)[:120]!r}')
            if shown_as_def := sorted(c for c in classes if f'def {c}(' in text): fail(f'classes shown as functions: {shown_as_def}')
            if page.locator('nav.cb-toc a').count() < (2 if page.locator('main h2').count() >= 2 else 0):
                fail('no table of contents')
            pager = page.locator('nav.cb-pager a').all_inner_texts()
            if len(pager) != (1 if path in (pages[0], pages[-1]) else 2): fail(f'previous/next links: {pager}')
            headings |= set(page.locator('main h2, main h3, main h4').all_inner_texts())
            if name in ('01_estimator', 'experiments/efficientnet_lite0_imagenet'):
                page.screenshot(path=str(shots/(Path(name).name + '.png')), full_page=False)
        if '07_cli.html' in pages:
            page.goto(base + '07_cli.html')
            if 'usage: condbook' not in page.inner_text('main'): failures.append('07_cli.html: `condbook --help` is not shown')
        browser.close()
    assert not failures, '\n'.join(failures)
    names = {h.strip().split('(')[0].strip() for h in headings}
    assert set(PUBLIC) <= names, set(PUBLIC) - names
    assert all((shots/f).stat().st_size > 20_000 for f in ('01_estimator.png', 'efficientnet_lite0_imagenet.png'))
