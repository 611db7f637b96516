"Write README.md from nbs/index.ipynb (Markdown cells, code cells and their text outputs) where Quarto is unavailable."
import json, re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text())
parts = []
for cell in nb['cells']:
    src = ''.join(cell['source'])
    if cell['cell_type'] == 'markdown':
        parts.append(src)
        continue
    if src.startswith('#|'): continue
    parts.append(f'```python\n{src}\n```')
    text = ''.join(''.join(o.get('text', o.get('data', {}).get('text/plain', ''))) for o in cell.get('outputs', [])
                   if o.get('name') != 'stderr')
    if text.strip(): parts.append(f'```\n{text.rstrip()}\n```')
readme = '\n\n'.join(parts) + '\n'
readme = re.sub(r'^# condbook\n\n> (.*)$', r'# condbook\n\n\1', readme, count=1, flags=re.M)
(root/'README.md').write_text('<!-- generated from nbs/index.ipynb by scripts/readme.py: edit the notebook -->\n\n' + readme)
