"""Offline HTML preview of the documentation site, where Quarto cannot be installed.

    .venv/bin/python scripts/preview.py [--out _preview]

Runs nbdev's processing for Quarto (what `nbdev_proc_nbs` does after trying to install Quarto: directives applied, API docs
generated with `show_doc`, into _proc/), then renders every processed notebook to HTML with its executed outputs and
figures embedded, and LaTeX typeset by the MathJax that the `jupyter-server-mathjax` package installs (no CDN).
What Quarto would take from the site's configuration, the preview takes from the same files: `_quarto.yml` at the
repository root (nbs/_quarto.yml links to it) and the metadata files it names in nbs/ (nbdev.yml: the title; sidebar.yml:
the pages in the course's order), with its options: `toc` and `toc-depth` (a table of contents beside each page),
`page-navigation` (previous/next links) and `css` (the site's style sheet).
"""
import argparse, html, os, re, shutil
from pathlib import Path
import nbformat, yaml
import jupyter_server_mathjax
from nbconvert import HTMLExporter
from traitlets.config import Config
from nbdev.doclinks import _build_modidx
from nbdev.serve import proc_nbs

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
MATHJAX = Path(jupyter_server_mathjax.__file__).parent/'static'


def merge(a:dict, b:dict)->dict:
    "`a` updated by `b`, nested dictionaries merged key by key (as Quarto merges metadata files)."
    out = dict(a)
    for k, v in b.items(): out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def site_config(quarto=ROOT/'_quarto.yml', nbs=NBS)->dict:
    "The site's Quarto configuration: `_quarto.yml` with its metadata files (relative to `nbs`, where Quarto reads it)."
    cfg = yaml.safe_load(quarto.read_text())
    for name in cfg.get('metadata-files', []): cfg = merge(cfg, yaml.safe_load((nbs/name).read_text()) or {})
    return cfg


def sidebar_pages(cfg:dict)->list:
    "[(section or None, notebook path relative to nbs/)] in the sidebar's order."
    def walk(items, section):
        for it in items:
            if isinstance(it, str): yield section, it
            else: yield from walk(it['contents'], it['section'])
    return list(walk(cfg['website']['sidebar']['contents'], None))


def frontmatter_to_markdown(nb)->dict:
    "nbdev turns the title cell into Quarto YAML front matter (a raw cell): put the title and description back as Markdown."
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.startswith('---'):
            meta = yaml.safe_load(c.source.strip('-\n')) or {}
            title = meta.get('title', '')
            md = (f"# {title}\n\n" if title else '') + (f"> {meta['description']}" if meta.get('description') else '')
            nb.cells[i] = nbformat.v4.new_markdown_cell(md)
            return meta
    return {}


def apply_cell_options(nb):
    "What Quarto does with the cell options nbdev leaves: `echo: false` hides the input, option lines are not shown."
    for c in nb.cells:
        if c.cell_type != 'code': continue
        lines = c.source.splitlines()
        if any(re.match(r'#\|\s*echo:\s*false', l) for l in lines): c.metadata.setdefault('tags', []).append('remove_input')
        c.source = '\n'.join(l for l in lines if not l.startswith('#|'))
        for o in c.get('outputs', []):  # show_doc's source links carry Quarto link attributes
            if 'text/markdown' in o.get('data', {}):
                o['data']['text/markdown'] = re.sub(r'\{target="_blank"[^}]*\}', '', o['data']['text/markdown'])


def href(page:str, prefix:str)->str: return prefix + page.replace('.ipynb', '.html')


def local_links(body:str, site_url:str, pages:dict, ids:dict, prefix:str)->str:
    "Links to the published site (nbdev's links from names to their docs) made links to this preview's pages."
    def local(m):
        page = pages.get(m.group(1))
        if page is None: return m.group(0)
        anchor = m.group(2) or ''
        if anchor:  # Quarto lowercases heading ids, nbconvert keeps their case
            anchor = '#' + next((i for i in ids[page] if i.lower() == anchor[1:].lower()), anchor[1:])
        return f'href="{href(page, prefix)}{anchor}"'
    return re.sub(r'href="' + re.escape(site_url.rstrip('/')) + r'/([^"#]+\.html)(#[^"]*)?"', local, body)
def plain(title:str)->str: return html.escape(title.replace('`', ''))


def nav_html(site_title, pages, current, prefix):
    "The sidebar: sections and page links, `current` highlighted; `prefix` leads from this page to the site root."
    out = [f'<nav class="cb-sidebar"><a class="cb-home" href="{prefix}index.html">{html.escape(site_title)}</a><ul>']
    section = None
    for sec, page, title in pages:
        if sec != section:
            if section is not None: out.append('</ul></li>')
            if sec is not None: out.append(f'<li class="cb-section">{html.escape(sec)}<ul>')
            section = sec
        cls = ' class="cb-current"' if page == current else ''
        out.append(f'<li><a{cls} href="{href(page, prefix)}">{plain(title)}</a></li>')
    if section is not None: out.append('</ul></li>')
    return ''.join(out) + '</ul></nav>'


_heading = re.compile(r'<h([2-6]) id="([^"]+)">(.*?)<a class="anchor-link"', flags=re.S)

def toc_html(body:str, depth:int=3)->str:
    "An on-page table of contents from the rendered page's headings (h2 … h`depth`), as Quarto's `toc` option draws it."
    items = [(int(l), i, re.sub(r'<[^>]+>', '', t).strip()) for l, i, t in _heading.findall(body) if int(l) <= depth]
    if not items: return ''
    links = ''.join(f'<li class="cb-toc-{l}"><a href="#{i}">{t}</a></li>' for l, i, t in items)
    return f'<nav class="cb-toc" aria-label="On this page"><h2>On this page</h2><ul>{links}</ul></nav>'


def pager_html(pages, i, prefix)->str:
    "Previous and next page in the sidebar's order, as Quarto's `page-navigation` option draws them."
    prev = pages[i - 1] if i > 0 else None
    nxt = pages[i + 1] if i + 1 < len(pages) else None
    link = lambda p, cls, arrow: (f'<a class="{cls}" href="{href(p[1], prefix)}"><small>{arrow}</small>{plain(p[2])}</a>'
                                  if p else '<span></span>')
    return f'<nav class="cb-pager">{link(prev, "cb-prev", "← Previous")}{link(nxt, "cb-next", "Next →")}</nav>'


STYLE = """<link rel="icon" href="data:,"><style>
:root { --cb-side: 15rem; --cb-toc: 14rem; }
.cb-sidebar { position: fixed; top: 0; left: 0; width: var(--cb-side); height: 100vh; overflow-y: auto; padding: 1rem;
  box-sizing: border-box; background: #f7f7f9; border-right: 1px solid #ddd; font: 14px/1.5 system-ui, sans-serif; }
.cb-sidebar ul { list-style: none; padding-left: 0.6rem; margin: 0.2rem 0; }
.cb-sidebar a, .cb-toc a, .cb-pager a { color: #2a5d8f; text-decoration: none; }
.cb-sidebar a.cb-current { font-weight: bold; color: #000; }
.cb-home { font-size: 1.2rem; font-weight: bold; } .cb-section { margin-top: 0.6rem; color: #555; font-weight: 600; }
/* one left margin, the sidebar's width (the body holds the main column: no second margin on <main>) */
body.jp-Notebook { margin: 0 0 0 var(--cb-side) !important; padding: 1rem 2rem 2rem; box-sizing: border-box; }
body > main { margin: 0 auto; max-width: 64rem; }
.cb-toc { display: none; }
@media (min-width: 1200px) {
  body.jp-Notebook.cb-with-toc { margin-right: var(--cb-toc) !important; }
  .cb-toc { display: block; position: fixed; top: 0; right: 0; width: var(--cb-toc); height: 100vh; overflow-y: auto;
    padding: 1rem; box-sizing: border-box; border-left: 1px solid #eee; font: 13px/1.4 system-ui, sans-serif; background: #fff; }
}
.cb-toc h2 { font-size: 0.9rem; margin: 0 0 0.5rem; color: #555; }
.cb-toc ul { list-style: none; padding: 0; margin: 0; } .cb-toc li { margin: 0.15rem 0; }
.cb-toc .cb-toc-3 { padding-left: 0.8rem; font-size: 12px; } .cb-toc .cb-toc-4 { padding-left: 1.6rem; font-size: 12px; }
/* long code scrolls inside its own block, with a scrollbar that shows (no line is cut off) */
.jp-Notebook .highlight pre, .jp-OutputArea-output pre, .jp-RenderedMarkdown pre { overflow-x: auto; }
.jp-CodeMirrorEditor, .jp-InputArea, .jp-Cell-inputWrapper { overflow: visible !important; }
.jp-Notebook pre::-webkit-scrollbar { height: 8px; }
.jp-Notebook pre::-webkit-scrollbar-thumb { background: #bbb; border-radius: 4px; }
.jp-Notebook pre::-webkit-scrollbar-track { background: #f0f0f0; }
.jp-RenderedImage img, .jp-RenderedMarkdown img { max-width: 100%; height: auto; }
.cb-pager { display: flex; justify-content: space-between; gap: 1rem; margin: 3rem 0 1rem; padding-top: 1rem;
  border-top: 1px solid #ddd; font: 14px/1.4 system-ui, sans-serif; }
.cb-pager a { display: block; max-width: 45%; } .cb-pager small { display: block; color: #777; }
.cb-pager .cb-next { text-align: right; margin-left: auto; }
</style>"""


# the package ships MathJax's STIX-Web fonts only; its blank test font points at about:blank, which Chromium refuses with a
# console error: a local() source that fails quietly does the same job. HTML-CSS output everywhere (native MathML would need
# the TeX fonts, which the package does not ship), and no hidden assistive MathML (its double-struck letters ask for them too)
FONTS = ('MMLorHTML: {prefer: "HTML"}, menuSettings: {assistiveMML: false}, "HTML-CSS": {availableFonts: ["STIX-Web"], '
         'preferredFont: "STIX-Web", webFont: "STIX-Web", imageFont: null, '
         'styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local(\'MathJax_Blank\')"}}},')


def config_first(body:str)->str:
    "Move the page's MathJax configuration above the script that loads MathJax, so MathJax cannot start without it."
    # MathJax reads `text/x-mathjax-config` blocks once, early in its start-up; one placed after MathJax.js is missed when
    # the parser reaches it late (a long page on a busy machine), and MathJax then asks for its default TeX fonts (a 404)
    m = re.search(r'<!-- MathJax configuration -->\s*<script type="text/x-mathjax-config">.*?</script>', body, flags=re.S)
    load = body.find('<!-- Load mathjax -->')
    if m is None or load < 0 or load > m.start(): return body
    return body[:load] + m.group(0) + '\n' + body[load:m.start()] + body[m.end():]


def render(proc:Path, out:Path, cfg:dict=None)->list:
    "HTML of every processed notebook in `proc`, in the sidebar's order, into `out`; return the page paths."
    cfg = cfg or site_config()
    opts, site = cfg.get('format', {}).get('html', {}), cfg['website']
    config = Config()
    config.TagRemovePreprocessor.update(enabled=True, remove_input_tags={'remove_input'})
    exporter = HTMLExporter(config=config, template_name='lab', embed_images=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    css = ''.join(f'<style>{(NBS/f).read_text()}</style>' for f in ([opts['css']] if isinstance(opts.get('css'), str)
                                                                   else opts.get('css', [])))
    pages, published = [], {}
    for section, page in sidebar_pages(cfg):
        nb = nbformat.read(proc/page, as_version=4)
        apply_cell_options(nb)
        meta = frontmatter_to_markdown(nb)
        published[meta.get('output-file', href(page, ''))] = page
        pages.append((section, page, nb, meta.get('title') or Path(page).stem))
    links = [(s, p, t) for s, p, _, t in pages]
    bodies = {}
    for i, (_, page, nb, title) in enumerate(pages):
        prefix = '../' * page.count('/')
        exporter.mathjax_url = f'{prefix}mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full'
        body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': title, 'path': str((proc/page).parent)}})
        body = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', '', body)  # no network: drop CDN scripts
        body = body.replace('</head>', css + STYLE + '</head>', 1)
        body = body.replace("messageStyle: 'none',", "messageStyle: 'none', " + FONTS, 1)
        body = config_first(body)
        toc = toc_html(body, opts.get('toc-depth', 3)) if opts.get('toc') else ''
        if toc: body = body.replace('<body class="jp-Notebook"', '<body class="jp-Notebook cb-with-toc"', 1)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav_html(site.get('title', 'Home'), links, page, prefix) + toc,
                      body, count=1)
        if site.get('page-navigation'): body = body.replace('</main>', pager_html(links, i, prefix) + '</main>', 1)
        bodies[page] = body
    ids = {page: re.findall(r'<h[1-6] id="([^"]+)"', body) for page, body in bodies.items()}
    for page, body in bodies.items():
        if site.get('site-url'): body = local_links(body, site['site-url'], published, ids, '../' * page.count('/'))
        dest = out/href(page, '')
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body)
    return [out/href(p, '') for _, p, _ in links]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=str(ROOT/'_preview'), help='output folder (replaced)')
    args = p.parse_args(argv)
    out = Path(args.out)
    os.chdir(ROOT)
    _build_modidx()
    proc_nbs(NBS, n_workers=0)
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(MATHJAX, out/'mathjax')
    pages = render(ROOT/'_proc', out)
    for page in pages: print(f'{page.relative_to(out)}  {page.stat().st_size / 1024:.0f} KiB')
    print(f'wrote {len(pages)} pages: open {out}/index.html')


if __name__ == '__main__': main()
