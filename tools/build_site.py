"""Build the course website into `_site/` from the committed, executed notebooks (nothing is re-executed).

The site is made by Sphinx with MyST-NB (the engine under Jupyter Book 1) and the sphinx-book-theme.
This script stages a Sphinx source tree in a temporary folder:

- `index` is `nbs/index.ipynb` (the home page); the other `nbs/*.ipynb` are the chapters, `studies/*.ipynb`
  the studies (a section of their own), each read from disk at build time, sorted by name: a chapter added
  to `nbs/` appears in the sidebar with no list to edit;
- nbdev's directives are removed: `#| hide` cells are dropped, `#| export`-style lines are stripped from
  the code shown, `#| output: asis` output is rendered as Markdown;
- each chapter links to the API page of the module it exports (`#| default_exp`), and each API page
  (Sphinx autodoc over `__all__`, with nbdev's docments comments as parameter descriptions) links back;
- MathJax is served from the site itself (sphinx-mathjax-offline), so equations render offline.

Run: `bash .ci/site`, or `.venv/bin/python tools/build_site.py [--out DIR]`. Needs the `site` extra
(`pip install -e '.[dev,site]'`). The new site replaces `--out` only once the build has succeeded.
"""

import argparse
import copy
import json
import posixpath
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r'^\s*#\|\s?(.*?)\s*$')
CHAPTER = re.compile(r'^0*(\d+[a-z]?)_')  # 07_carma -> 7, 07a_serving -> 7a
KERNEL = {
    'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
    'language_info': {'name': 'python', 'pygments_lexer': 'ipython3'},
}


def markdown_cell(text, key):
    """A Markdown cell added by the site (its id derived from `key`, stable across builds)."""
    return {'cell_type': 'markdown', 'id': f'site-{key}', 'metadata': {}, 'source': text}


STUDY_NOTE = (
    '```{note}\nA **study**: an investigation of our own choices, outside the course. The course '
    'chapters link here where it matters; the library does not depend on it.\n```\n'
)


# ---- notebooks: nbdev directives -> what a reader sees -------------------------------------------------
def split_directives(src):
    """Leading `#|` lines of a cell (nbdev reads them there) as a dict, and the code after them."""
    lines, opts = src.splitlines(), {}
    i = 0
    while i < len(lines) and (DIRECTIVE.match(lines[i]) or (not lines[i].strip() and opts)):
        m = DIRECTIVE.match(lines[i])
        if m and m.group(1):  # `hide`, `default_exp carma`, `output: asis`
            kv = re.match(r'^([\w-]+)\s*:\s*(.*)$', m.group(1)) or re.match(r'^(\S+)\s*(.*)$', m.group(1))
            opts[kv.group(1)] = kv.group(2)
        i += 1
    return opts, '\n'.join(lines[i:]).strip('\n')


def stream_as_markdown(outputs):
    """`#| output: asis`: the cell prints Markdown; show it rendered, as nbdev's site does."""
    text = ''.join(''.join(o['text']) for o in outputs if o.get('output_type') == 'stream')
    return [{'output_type': 'display_data', 'metadata': {}, 'data': {'text/markdown': text}}]


def wide_output(out):
    """A figure or a table: shown wider than the text column."""
    data = out.get('data', {})
    text = ''.join(''.join(data.get(k, '')) for k in ('text/html', 'text/markdown'))
    return any(k.startswith('image/') for k in data) or bool(re.search(r'<table|^\|.*\|\s*$', text, re.M))


def reader_cell(cell):
    """The cell as the site shows it, or None when hidden (`#| hide`, `include: false`, directives only)."""
    if cell['cell_type'] != 'code':
        return cell
    opts, code = split_directives(''.join(cell['source']))
    if 'hide' in opts or opts.get('include') == 'false':
        return None
    cell = copy.deepcopy(cell)
    cell['source'] = code
    tags = cell.setdefault('metadata', {}).setdefault('tags', [])
    if opts.get('echo') == 'false':
        tags.append('remove-input')
    if opts.get('output') == 'false':
        tags.append('remove-output')
    elif opts.get('output') == 'asis':  # the printed Markdown alone, as README.md shows it
        cell['outputs'] = stream_as_markdown(cell.get('outputs', []))
        tags.append('remove-input')
    if not code.strip() and not cell.get('outputs'):
        return None
    if not code.strip():
        tags.append('remove-input')
    if any(wide_output(o) for o in cell.get('outputs', [])):
        tags.append('full-width')  # the theme widens the cell into the margin: figures, tables legible
    return cell


def default_exp(nb):
    """The module a chapter exports (`#| default_exp NAME`), or None."""
    for cell in nb['cells']:
        if cell['cell_type'] == 'code':
            opts, _ = split_directives(''.join(cell['source']))
            if 'default_exp' in opts:
                return opts['default_exp'].split()[0]
    return None


def title_of(nb, fallback):
    """The first Markdown `# heading` of a notebook."""
    for cell in nb['cells']:
        if cell['cell_type'] == 'markdown':
            for line in ''.join(cell['source']).splitlines():
                if line.startswith('# '):
                    return line[2:].strip()
    return fallback


def after_title(nb, text):
    """Insert Markdown `text` after the title and its `> summary` (the first `# heading`)."""
    for cell in nb['cells']:
        if cell['cell_type'] != 'markdown':
            continue
        lines = ''.join(cell['source']).splitlines()
        heads = [i for i, line in enumerate(lines) if line.startswith('# ')]
        if heads:
            i = heads[0] + 1
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith('>')):
                i += 1
            cell['source'] = '\n'.join(lines[:i] + ['', text, ''] + lines[i:])
            return nb
    nb['cells'].insert(0, markdown_cell(text, 'head'))
    return nb


LINK = re.compile(r'(\]\(\s*<?|<img\s[^>]*?src=["\'])([^)\s"\'>]+)')


def rebase_links(src, prefix):
    """Relative Markdown links and images of a notebook moved from `prefix/` to the site's root."""

    def fix(m):
        target = m.group(2)
        if re.match(r'^([a-z][a-z0-9+.-]*:|#|/)', target, re.I):
            return m.group(0)
        return m.group(1) + posixpath.normpath(posixpath.join(prefix, target))

    return LINK.sub(fix, src)


def reader_notebook(nb):
    """A notebook as the site shows it: hidden cells dropped, directives stripped, a kernel named."""
    nb = copy.deepcopy(nb)
    nb['cells'] = [c for c in map(reader_cell, nb['cells']) if c is not None]
    nb['metadata'] = {**nb.get('metadata', {}), **KERNEL}
    return nb


# ---- the source tree ------------------------------------------------------------------------------------
def read_nb(path):
    return json.loads(path.read_text(encoding='utf-8'))


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding='utf-8')


def chapters(root):
    """Every notebook of nbs/ but the home page, in file-name order: the course order."""
    return sorted(p for p in (root / 'nbs').glob('*.ipynb') if p.stem != 'index')


def studies(root):
    return sorted((root / 'studies').glob('*.ipynb'))


def modules(root):
    """Public modules of the library, by name (carma_nb/NAME.py, not starting with `_`)."""
    return sorted(p.stem for p in (root / 'carma_nb').glob('*.py') if not p.stem.startswith('_'))


def toctree(caption, entries):
    body = '\n'.join(f'{title} <{doc}>' for title, doc in entries)
    return f'```{{toctree}}\n:caption: {caption}\n:hidden:\n:maxdepth: 1\n\n{body}\n```\n'


def api_page(module, chapter_docs):
    """One API reference page: the module's exported names, from its signatures and docstrings."""
    written = ', '.join(f':doc:`{title} <../{doc}>`' for title, doc in chapter_docs)
    where = f'Exported from chapter {written}.\n\n' if written else ''
    head = f'carma_nb.{module}'
    return (
        f'{head}\n{"=" * len(head)}\n\n{where}'
        f'.. automodule:: carma_nb.{module}\n   :members:\n   :undoc-members:\n'
    )


def stage(root, src):
    """Write the Sphinx source tree for the repository `root` into `src`; return the page counts."""
    chaps = [(p, read_nb(p)) for p in chapters(root)]
    studs = [(p, read_nb(p)) for p in studies(root)]
    mods = modules(root)
    exported = {}  # module -> [(title, doc)]
    course, study_entries = [], []
    for path, nb in chaps:
        doc, title = f'nbs/{path.stem}', title_of(nb, path.stem)
        num = CHAPTER.match(path.name)
        title = f'{num.group(1)} · {title}' if num else title
        course.append((title, doc))
        mod = default_exp(nb)
        page = reader_notebook(nb)
        if mod in mods:
            exported.setdefault(mod, []).append((title, doc))
            page = after_title(page, f'*API reference:* [`carma_nb.{mod}`](../api/{mod}.rst)')
        write(src / f'{doc}.ipynb', json.dumps(page, ensure_ascii=False))
    for path, nb in studs:
        doc = f'studies/{path.stem}'
        study_entries.append((title_of(nb, path.stem), doc))
        page = after_title(reader_notebook(nb), STUDY_NOTE)
        write(src / f'{doc}.ipynb', json.dumps(page, ensure_ascii=False))
    for mod in mods:
        write(src / 'api' / f'{mod}.rst', api_page(mod, exported.get(mod, [])))

    home = reader_notebook(read_nb(root / 'nbs' / 'index.ipynb'))
    for cell in home['cells']:
        if cell['cell_type'] == 'markdown':
            cell['source'] = rebase_links(''.join(cell['source']), 'nbs')
    tocs = toctree('Course', course)
    if study_entries:
        tocs += '\n' + toctree('Studies (outside the course)', study_entries)
    tocs += '\n' + toctree('API reference', [(f'carma_nb.{m}', f'api/{m}') for m in mods])
    home['cells'].append(markdown_cell(tocs, 'toc'))
    write(src / 'index.ipynb', json.dumps(home, ensure_ascii=False))

    (src / 'figures').symlink_to(root / 'figures', target_is_directory=True)
    return len(course), len(study_entries), len(mods)


def build(root=ROOT, out=None, quiet=True):
    """Stage and build the site into `out` (default `root/_site`); `out` is replaced only on success."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        sys.exit("The site tool chain is missing: run `bash .ci/setup` (it installs the `site` extra).")
    out = Path(out or root / '_site').resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # built beside `out`, on the same file system, so that the new site replaces the old by renaming
    with tempfile.TemporaryDirectory(dir=out.parent, prefix='.site-build-') as tmp:
        tmp = Path(tmp)
        src, new, log = tmp / 'src', tmp / 'html', tmp / 'warnings.txt'
        counts = stage(root, src)
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))  # autodoc imports the library of this checkout
        conf = root / 'tools' / 'site'  # conf.py, the CSS and the docments extension
        args = ['-b', 'html', '-E', '-j', '1', '-c', str(conf), '-d', str(tmp / 'doctrees'), '-w', str(log)]
        args += (['-q'] if quiet else []) + [str(src), str(new)]
        status = build_main(args)
        warnings = log.read_text(encoding='utf-8').strip() if log.exists() else ''
        if status != 0:
            sys.exit(f'Sphinx failed (exit {status}): its messages are above; {out} was left as it was.')
        (new / '.buildinfo').unlink(missing_ok=True)
        old = tmp / 'previous'
        if out.exists():
            out.rename(old)
        new.rename(out)
    secs = time.perf_counter() - start
    print(
        f'site: {counts[0]} chapters, {counts[1]} studies, {counts[2]} API pages -> {out}/index.html '
        f'in {secs:.0f} s' + (f'; Sphinx warnings:\n{warnings}' if warnings else '; no Sphinx warnings')
    )
    return out, warnings


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, help='output folder (default: _site/ at the repository root)')
    ap.add_argument('--verbose', action='store_true', help="show Sphinx's progress")
    args = ap.parse_args(argv)
    build(out=args.out, quiet=not args.verbose)


if __name__ == '__main__':
    main()
