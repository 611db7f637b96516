"""Offline HTML preview of the documentation site, where Quarto cannot be installed.

    .venv/bin/python scripts/preview.py [--out _preview]

Runs nbdev's processing for Quarto (what `nbdev_proc_nbs` does after trying to install Quarto: directives applied, API docs
generated with `show_doc`, into _proc/), then
renders every processed notebook in the order of nbs/sidebar.yml to HTML with its executed outputs, figures embedded,
a sidebar on every page, and LaTeX typeset by the MathJax that the `jupyter-server-mathjax` package installs (no CDN).
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
MATHJAX = Path(jupyter_server_mathjax.__file__).parent/'static'


def sidebar_pages(sidebar=ROOT/'nbs'/'sidebar.yml'):
    "[(section or None, notebook path relative to nbs/)] in the sidebar's order."
    def walk(items, section):
        for it in items:
            if isinstance(it, str): yield section, it
            else: yield from walk(it['contents'], it['section'])
    return list(walk(yaml.safe_load(sidebar.read_text())['website']['sidebar']['contents'], None))


def frontmatter_to_markdown(nb):
    "nbdev turns the title cell into Quarto YAML front matter (a raw cell); put the title and description back as Markdown."
    title = ''
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.startswith('---'):
            meta = yaml.safe_load(c.source.strip('-\n')) or {}
            title = meta.get('title', '')
            md = (f"# {title}\n\n" if title else '') + (f"> {meta['description']}" if meta.get('description') else '')
            nb.cells[i] = nbformat.v4.new_markdown_cell(md)
            break
    return title


def apply_cell_options(nb):
    "What Quarto does with the cell options nbdev leaves: `echo: false` hides the input, option lines are not shown."
    for c in nb.cells:
        if c.cell_type != 'code': continue
        lines = c.source.splitlines()
        if any(re.match(r'#\|\s*echo:\s*false', l) for l in lines): c.metadata.setdefault('tags', []).append('remove_input')
        c.source = '\n'.join(l for l in lines if not l.startswith('#|'))
        for o in c.get('outputs', []):  # show_doc's source links carry Quarto link attributes
            if 'text/markdown' in o.get('data', {}): o['data']['text/markdown'] = re.sub(r'\{target="_blank"[^}]*\}', '', o['data']['text/markdown'])


def nav_html(pages, current, prefix):
    "The sidebar: sections and page links, `current` highlighted; `prefix` leads from this page to the site root."
    out, section = ['<nav class="cb-sidebar"><a class="cb-home" href="%sindex.html">condbook</a><ul>' % prefix], None
    for sec, page, title in pages:
        if sec != section:
            if section is not None: out.append('</ul></li>')
            if sec is not None: out.append(f'<li class="cb-section">{html.escape(sec)}<ul>')
            section = sec
        href = prefix + page.replace('.ipynb', '.html')
        cls = ' class="cb-current"' if page == current else ''
        out.append(f'<li><a{cls} href="{href}">{html.escape(title.replace("`", ""))}</a></li>')
    if section is not None: out.append('</ul></li>')
    return ''.join(out) + '</ul></nav>'


STYLE = """<link rel="icon" href="data:,"><style>
.cb-sidebar { position: fixed; top: 0; left: 0; width: 15rem; height: 100vh; overflow-y: auto; padding: 1rem; box-sizing: border-box;
  background: #f7f7f9; border-right: 1px solid #ddd; font: 14px/1.5 system-ui, sans-serif; }
.cb-sidebar ul { list-style: none; padding-left: 0.6rem; margin: 0.2rem 0; }
.cb-sidebar a { color: #2a5d8f; text-decoration: none; } .cb-sidebar a.cb-current { font-weight: bold; color: #000; }
.cb-home { font-size: 1.2rem; font-weight: bold; } .cb-section { margin-top: 0.6rem; color: #555; font-weight: 600; }
body > main, body.jp-Notebook { margin-left: 15rem !important; }
</style>"""


# the package ships MathJax's STIX-Web fonts only; its blank test font points at about:blank, which Chromium refuses with a
# console error: a local() source that fails quietly does the same job. HTML-CSS output everywhere (native MathML would need
# the TeX fonts, which the package does not ship), and no hidden assistive MathML (its double-struck letters ask for them too)
FONTS = ('MMLorHTML: {prefer: "HTML"}, menuSettings: {assistiveMML: false}, "HTML-CSS": {availableFonts: ["STIX-Web"], preferredFont: "STIX-Web", webFont: "STIX-Web", imageFont: null, '
         'styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local(\'MathJax_Blank\')"}}},')


def render(proc:Path, out:Path):
    "HTML of every processed notebook in `proc`, in the sidebar's order, into `out`; return the page paths."
    config = Config()
    config.TagRemovePreprocessor.update(enabled=True, remove_input_tags={'remove_input'})
    exporter = HTMLExporter(config=config, template_name='lab', embed_images=True, exclude_input_prompt=True, exclude_output_prompt=True)
    pages = []
    for section, page in sidebar_pages():
        nb = nbformat.read(proc/page, as_version=4)
        apply_cell_options(nb)
        pages.append((section, page, nb, frontmatter_to_markdown(nb) or Path(page).stem))
    links = [(s, p, t) for s, p, _, t in pages]
    for _, page, nb, title in pages:
        depth = page.count('/')
        prefix = '../' * depth
        exporter.mathjax_url = f'{prefix}mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full'
        body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': title, 'path': str((proc/page).parent)}})
        body = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', '', body)  # no network: drop CDN scripts (require.js)
        body = body.replace('</head>', STYLE + '</head>', 1)
        body = body.replace("messageStyle: 'none',", "messageStyle: 'none', " + FONTS, 1)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav_html(links, page, prefix), body, count=1)
        dest = out/page.replace('.ipynb', '.html')
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body)
    return [out/p.replace('.ipynb', '.html') for _, p, _ in links]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=str(ROOT/'_preview'), help='output folder (replaced)')
    args = p.parse_args(argv)
    out = Path(args.out)
    os.chdir(ROOT)
    _build_modidx()
    proc_nbs(ROOT/'nbs', n_workers=0)
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(MATHJAX, out/'mathjax')
    pages = render(ROOT/'_proc', out)
    for page in pages: print(f'{page.relative_to(out)}  {page.stat().st_size / 1024:.0f} KiB')
    print(f'wrote {len(pages)} pages: open {out}/index.html')


if __name__ == '__main__': main()
