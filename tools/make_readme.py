"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which is not available here).

Markdown cells are copied verbatim; code cells become ```python blocks followed by their text output.
Run from anywhere: `python tools/make_readme.py`.
"""

import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    '<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n'
)


def cell_text(cell):
    src = ''.join(cell['source'])
    if cell['cell_type'] == 'markdown':
        return src.strip() + '\n'
    if cell['cell_type'] != 'code' or src.lstrip().startswith('#| hide'):
        return ''
    if src.lstrip().startswith('#| output: asis'):  # a cell that prints Markdown: its output only, verbatim
        return (
            ''.join(
                ''.join(o['text']) for o in cell.get('outputs', []) if o.get('output_type') == 'stream'
            ).strip()
            + '\n'
        )
    out = ['```python\n' + src.strip() + '\n```\n']
    texts = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream':
            texts.append(''.join(o['text']))
        elif 'text/plain' in o.get('data', {}):
            texts.append(''.join(o['data']['text/plain']) + '\n')
    if texts:
        out.append('\n```\n' + ''.join(texts).rstrip('\n') + '\n```\n')
    return ''.join(out)


def main():
    nb = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))
    body = HEADER + '\n'.join(t for t in map(cell_text, nb['cells']) if t)
    fd, tmp = tempfile.mkstemp(dir=ROOT, prefix='.README.', suffix='.tmp')
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(body)
    os.replace(tmp, ROOT / 'README.md')


if __name__ == '__main__':
    main()
