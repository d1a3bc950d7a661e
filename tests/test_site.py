"""The course website: built once by tools/build_site.py, then opened in headless Chromium.

Static checks read the built HTML (every page present, nbdev directives and `#| hide` cells gone, every
internal link and image resolving, one API page per module linked from its chapter). The browser checks
serve the site on 127.0.0.1 and load every page in one Chromium: each page loads, every image decodes,
no request fails, LaTeX is typeset by the bundled MathJax (none left as source), search answers, and
figures are shown at a legible scale. Two screenshots (home page, chapter 7) must not be blank.

Needs the `site` extra and Debian's `chromium`; `bash .ci/setup` installs both. Without them the test
skips, except under CI (`CI=true`), where it fails.
"""

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import threading
import time
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the theme and MyST call Sphinx APIs that Sphinx 11 will remove: their business, not a site defect
pytestmark = pytest.mark.filterwarnings('ignore:.*is deprecated. Check CHANGES for Sphinx API')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def _absent():
    """Why the site cannot be checked here, or None."""
    missing = [m for m in ('sphinx', 'myst_nb', 'sphinx_book_theme') if importlib.util.find_spec(m) is None]
    if missing:
        return f"the site tool chain is absent ({', '.join(missing)} not importable)"
    if not CHROMIUM:
        return "Debian's chromium is not installed"
    return None


if _why := _absent():
    _why += ': run `bash .ci/setup` (it installs the `site` extra and chromium)'
    if os.environ.get('CI'):
        pytest.fail(_why, pytrace=False)
    pytest.skip(_why, allow_module_level=True)

_spec = importlib.util.spec_from_file_location('build_site', ROOT / 'tools' / 'build_site.py')
build_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_site)

VIEWPORT = (1440, 900)  # a laptop screen, in CSS pixels
MIN_FIGURE_SCALE = 0.75  # 10-pt labels are 14 px at a figure's natural size: they keep >= 10.5 px
BROWSER_TIMEOUT = 300  # seconds for Chromium to visit every page


# ---- what the site should hold, read from the repository ----------------------------------------------
def chapter_docs():
    return [f'nbs/{p.stem}' for p in build_site.chapters(ROOT)]


def study_docs():
    return [f'studies/{p.stem}' for p in build_site.studies(ROOT)]


def module_docs():
    return [f'api/{m}' for m in build_site.modules(ROOT)]


def source_of(doc):
    return ROOT / 'nbs' / 'index.ipynb' if doc == 'index' else ROOT / f'{doc}.ipynb'


def visible_code_cells(nb):
    """Code cells whose code a reader should see: not `#| hide`, not `#| echo: false` nor `#| output: asis`
    (their output alone shows), with code left once the `#|` lines are gone."""
    n = 0
    for cell in nb['cells']:
        if cell['cell_type'] != 'code':
            continue
        lines = ''.join(cell['source']).splitlines()
        directives = {' '.join(line.strip()[2:].split()) for line in lines if line.strip().startswith('#|')}
        code = [line for line in lines if line.strip() and not line.strip().startswith('#|')]
        if code and not directives & {'hide', 'echo: false', 'output: asis', 'include: false'}:
            n += 1
    return n


def exported_names(module):
    """Functions and classes named in a module's `__all__`, read from its source (no import)."""
    tree = ast.parse((ROOT / 'carma_nb' / f'{module}.py').read_text(encoding='utf-8'))
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '__all__' for t in node.targets):
            names = ast.literal_eval(node.value)
    return [n for n in names if n in defs]


# ---- HTML reading ---------------------------------------------------------------------------------------
class Page(HTMLParser):
    """Links, ids, visible text and counts of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs, self.ids, self.text, self.classes, self.tables = [], set(), [], [], 0
        self.code = []  # the text of <pre> blocks: the code cells and outputs shown
        self._skip = self._pre = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a:
            self.ids.add(a['id'])
        if tag in ('a', 'link') and a.get('href'):
            self.refs.append((tag, a['href']))
        if tag in ('img', 'script', 'iframe', 'source') and a.get('src'):
            self.refs.append((tag, a['src']))
        self.classes.extend((a.get('class') or '').split())
        self.tables += tag == 'table'
        self._skip += tag in ('script', 'style')
        self._pre += tag == 'pre'

    def handle_endtag(self, tag):
        if tag in ('script', 'style'):
            self._skip = max(0, self._skip - 1)
        if tag == 'pre':
            self._pre = max(0, self._pre - 1)
            self.code.append('\n')

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)
        if self._pre:
            self.code.append(data)


def read_page(path):
    p = Page()
    p.feed(path.read_text(encoding='utf-8'))
    p.text, p.code = ''.join(p.text), ''.join(p.code)
    return p


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    """The site, built once for this module into a temporary folder."""
    out = tmp_path_factory.mktemp('site') / '_site'
    start = time.perf_counter()
    path, warnings = build_site.build(out=out)
    print(f'site built in {time.perf_counter() - start:.0f} s')
    return path, warnings


@pytest.fixture(scope='module')
def pages(site):
    path, _ = site
    return {p.relative_to(path).as_posix(): read_page(p) for p in path.rglob('*.html')}


def test_build_is_clean(site):
    _, warnings = site
    assert not warnings, (
        'Sphinx warned while building the site (fix the notebook Markdown or the docstring it names; '
        f'docstrings are reStructuredText to autodoc):\n{warnings}'
    )


def test_every_page_is_there(site, pages):
    docs = ['index'] + chapter_docs() + study_docs() + module_docs()
    missing = [d for d in docs if f'{d}.html' not in pages]
    assert not missing, f'pages not built: {missing}'
    assert (site[0] / 'searchindex.js').is_file() and 'search.html' in pages
    assert len(chapter_docs()) >= 2 and module_docs()


def test_sidebar_lists_the_course_in_order(pages):
    home = pages['index.html']
    links = [unquote(h).removesuffix('.html') for t, h in home.refs if t == 'a']
    seen = list(dict.fromkeys(h for h in links if re.match(r'^nbs/[^#]+$', h)))
    assert seen == chapter_docs(), f'the sidebar does not list the chapters in course order: {seen}'
    for doc in study_docs():
        assert any(h == f'{doc}.html' for _, h in home.refs), f'{doc} missing from the sidebar'
    assert 'Studies (outside the course)' in home.text


def test_nbdev_directives_and_hidden_cells_do_not_show(pages):
    for doc in ['index'] + chapter_docs() + study_docs():
        page = pages[f'{doc}.html']
        assert not re.search(r'(?m)^\s*#\|', page.code), f'{doc}: an nbdev directive (#|) is shown'
        assert 'nbdev.nbdev_export()' not in page.code, f'{doc}: a `#| hide` cell is shown'
        nb = json.loads(source_of(doc).read_text(encoding='utf-8'))
        shown, want = page.classes.count('cell_input'), visible_code_cells(nb)
        assert shown == want, f'{doc}: {shown} code cells shown, {want} expected (hidden: dropped)'


def test_chapters_link_their_api_page_and_back(pages):
    for path in build_site.chapters(ROOT):
        nb = json.loads(path.read_text(encoding='utf-8'))
        mod = build_site.default_exp(nb)
        if mod is None:
            continue
        doc = f'nbs/{path.stem}'
        assert f'../api/{mod}.html' in [h for _, h in pages[f'{doc}.html'].refs], f'{doc} lacks its API link'
        assert f'../{doc}.html' in [h for _, h in pages[f'api/{mod}.html'].refs], f'api/{mod} lacks {doc}'


def test_api_pages_document_every_exported_function(pages):
    for mod in build_site.modules(ROOT):
        page = pages[f'api/{mod}.html']
        missing = [n for n in exported_names(mod) if f'carma_nb.{mod}.{n}' not in page.ids]
        assert not missing, f'api/{mod}: exported but not documented: {missing}'


def test_every_internal_link_and_image_resolves(site, pages):
    root, broken = site[0], []
    for name, page in pages.items():
        if name.startswith('_static/'):
            continue  # the theme's Jinja macro files, copied verbatim: not pages
        for tag, ref in page.refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc:
                if tag != 'a':
                    broken.append(f'{name}: loads {ref} from the network (the site must work offline)')
                continue
            target = (root / name).parent / unquote(parts.path) if parts.path else root / name
            target = target.resolve()
            if target.is_dir():
                target = target / 'index.html'
            if not target.is_file() or root.resolve() not in target.parents:
                broken.append(f'{name}: {tag} -> {ref}')
            elif parts.fragment and target.suffix == '.html':
                rel = target.relative_to(root.resolve()).as_posix()
                if unquote(parts.fragment) not in pages[rel].ids:
                    broken.append(f'{name}: {ref} (no such anchor)')
    assert not broken, 'broken links or images:\n' + '\n'.join(sorted(set(broken))[:50])


def tables_in(nb):
    """Tables a notebook holds: Markdown pipe tables (in cells or `asis` output) and HTML tables."""
    sep = re.compile(r'(?m)^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$')
    n = 0
    for cell in nb['cells']:
        if cell['cell_type'] == 'markdown':
            n += len(sep.findall(''.join(cell['source'])))
        for out in cell.get('outputs', []):
            html = ''.join(out.get('data', {}).get('text/html', ''))
            n += html.count('<table') if html else 0
            if cell['cell_type'] == 'code' and '#| output: asis' in ''.join(cell['source']):
                n += len(sep.findall(''.join(out.get('text', ''))))
    return n


def test_tables_are_tables(pages):
    for doc in ['index'] + chapter_docs() + study_docs():
        page, want = pages[f'{doc}.html'], tables_in(json.loads(source_of(doc).read_text(encoding='utf-8')))
        assert '<table' not in page.text, f'{doc}: a table is shown as HTML source'
        assert page.tables >= want, f'{doc}: {page.tables} tables rendered, {want} in the notebook'


# ---- the browser ----------------------------------------------------------------------------------------
HARNESS = """<!doctype html><meta charset="utf-8"><title>site check</title>
<iframe id="f" style="width:%(w)dpx;height:%(h)dpx;border:0"></iframe>
<script>
const PAGES = %(pages)s, frame = document.getElementById('f');
const sleep = ms => new Promise(r => setTimeout(r, ms));
function visit(url) {
  return new Promise(resolve => {
    const timer = setTimeout(() => resolve(false), 30000);
    frame.onload = () => { clearTimeout(timer); resolve(true); };
    frame.src = url;
  });
}
function rawLatex(d) {  // LaTeX left as source in the text a reader sees
  const found = [], walk = d.createTreeWalker(d.body, NodeFilter.SHOW_TEXT);
  const pat = /\\\\\\(|\\\\\\[|\\$\\$|\\$[^$\\s][^$]*[\\\\^_][^$]*\\$/;
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (n.parentElement.closest('pre, code, script, style, mjx-container, .search')) continue;
    if (pat.test(n.textContent)) found.push(n.textContent.trim().slice(0, 80));
  }
  return found;
}
async function check(url) {
  const loaded = await visit(url), w = frame.contentWindow, d = frame.contentDocument;
  if (!loaded || !d || !d.body) return {loaded: false};
  await Promise.all([...d.images].filter(i => !i.complete).map(
    i => new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })));
  if (w.MathJax && w.MathJax.startup && w.MathJax.startup.promise) await w.MathJax.startup.promise;
  await d.fonts.ready;
  let hits = null;
  if (url.includes('search.html')) {  // wait for Sphinx's summary line: "Search finished, found N pages ..."
    const summary = () => (d.querySelector('.search-summary') || {}).textContent || '';
    const done = () => /finished|did not match/i.test(summary());
    for (let t = 0; t < 300 && !done(); t++) await sleep(100);
    await sleep(500);
    hits = d.querySelectorAll('#search-results li').length;
  }
  const math = [...d.querySelectorAll('.math')];
  return {
    loaded: true, title: d.title, h1: (d.querySelector('h1') || {}).textContent || '',
    images: [...d.images].map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth,
      shown: Math.round(i.getBoundingClientRect().width), width: +i.getAttribute('width') || null,
      figure: !!i.closest('.cell_output')})),
    math: math.length, typeset: d.querySelectorAll('mjx-container').length,
    untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    mathErrors: d.querySelectorAll('mjx-merror').length, raw: rawLatex(d), searchHits: hits,
    prev: (d.querySelector('a.left-prev') || {}).href || null,
    next: (d.querySelector('a.right-next') || {}).href || null,
  };
}
(async () => {
  const results = {};
  for (const p of PAGES) {
    try { results[p] = await check(p); } catch (e) { results[p] = {error: String(e)}; }
  }
  await fetch('/__results__', {method: 'POST', body: JSON.stringify(results)});
})();
</script>"""


class Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(root, pages):
    """Serve `root` on 127.0.0.1 with the harness at /__check__.html; log every request's status."""
    log, done, results = [], threading.Event(), {}

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_response(self, code, message=None):
            log.append((self.path, code))
            super().send_response(code, message)

        def do_GET(self):
            if self.path == '/__check__.html':
                body = HARNESS % {'w': VIEWPORT[0], 'h': VIEWPORT[1], 'pages': json.dumps(pages)}
                data = body.encode()
                self.send_response(200)
                self.send_header('Content-Type', 'text/html; charset=utf-8')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                super().do_GET()

        def do_POST(self):
            results.update(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
            self.send_response(204)
            self.end_headers()
            done.set()

    httpd = Server(('127.0.0.1', 0), partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, log, done, results


def chromium(*args, profile):
    return [
        CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
        '--hide-scrollbars', '--mute-audio', f'--user-data-dir={profile}', *args,
    ]  # fmt: skip


@pytest.fixture(scope='module')
def browser(site, tmp_path_factory):
    """Every page visited once by one headless Chromium; the results and the server's request log."""
    root = site[0]
    docs = ['index'] + chapter_docs() + study_docs() + module_docs()
    urls = [f'/{d}.html' for d in docs] + ['/search.html?q=counterfactual']
    httpd, log, done, results = serve(root, urls)
    start = time.perf_counter()
    proc = subprocess.Popen(
        chromium('--window-size=1600,1000', f'http://127.0.0.1:{httpd.server_port}/__check__.html',
                 profile=tmp_path_factory.mktemp('chromium')),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        finished = done.wait(BROWSER_TIMEOUT)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        httpd.shutdown()
    assert finished, f'Chromium did not visit the {len(urls)} pages within {BROWSER_TIMEOUT} s'
    print(f'{len(urls)} pages checked in Chromium in {time.perf_counter() - start:.0f} s')
    return results, log


def test_every_page_loads_in_the_browser(browser):
    results, log = browser
    bad = {u: r for u, r in results.items() if not r.get('loaded') or not r.get('h1')}
    assert not bad, f'pages that did not load (or have no title): {bad}'
    failed = sorted({f'{path} ({code})' for path, code in log if code >= 400 and path != '/favicon.ico'})
    assert not failed, f'requests that failed while reading the site: {failed}'


def test_every_image_decodes(browser):
    results, _ = browser
    broken = [(u, i['src']) for u, r in results.items() for i in r.get('images', []) if not i['natural']]
    assert not broken, f'images that did not load: {broken}'


def test_latex_is_typeset_not_shown_as_source(browser):
    results, _ = browser
    for doc in ['index'] + chapter_docs() + study_docs():
        r = results[f'/{doc}.html']
        assert not r['untypeset'], f'{doc}: math left untypeset: {r["untypeset"][:3]}'
        assert not r['raw'], f'{doc}: LaTeX shown as source: {r["raw"][:3]}'
        assert not r['mathErrors'], f'{doc}: MathJax reported {r["mathErrors"]} errors'
        assert r['typeset'] >= r['math']
    assert sum(results[f'/{d}.html']['typeset'] for d in chapter_docs()) > 50, 'hardly any math typeset'


def test_chapters_have_previous_and_next(browser):
    results, _ = browser
    docs = chapter_docs()
    for before, doc, after in zip(['index'] + docs, docs, docs[1:] + [None]):
        r = results[f'/{doc}.html']
        assert r['prev'] and r['prev'].endswith(f'/{before}.html'), f'{doc}: previous is {r["prev"]}'
        if after:
            assert r['next'] and r['next'].endswith(f'/{after}.html'), f'{doc}: next is {r["next"]}'


def test_search_finds_pages(browser):
    results, _ = browser
    hits = results['/search.html?q=counterfactual']['searchHits']
    assert hits > 3, f'search found {hits} pages for "counterfactual"'


def test_figures_are_legible(browser):
    """At a laptop's width every figure shows at >= 75 % of its natural size (labels >= 10.5 px)."""
    results, _ = browser
    small = [
        (u, i['src'].rsplit('/', 1)[-1][:12], i['shown'], i['width'])
        for u, r in results.items()
        for i in r.get('images', [])
        if i['figure'] and i['width'] and i['shown'] < MIN_FIGURE_SCALE * i['width']
    ]
    assert not small, (
        f'figures shown below {MIN_FIGURE_SCALE:.0%} of their natural width (page, image, shown, natural): '
        f'{small}; draw them narrower (figsize) or widen them in tools/site/_static/site.css'
    )


def test_screenshots_are_not_blank(site, tmp_path_factory):
    from PIL import Image, ImageChops, ImageStat

    shots = Path(os.environ.get('CARMA_SITE_SHOTS') or tmp_path_factory.mktemp('shots'))
    shots.mkdir(parents=True, exist_ok=True)
    httpd, _, _, _ = serve(site[0], [])
    try:
        for name, doc in [('home', 'index'), ('chapter07', next(d for d in chapter_docs() if '/07_' in d))]:
            png = shots / f'{name}.png'
            subprocess.run(
                chromium(f'--window-size={VIEWPORT[0]},{VIEWPORT[1] * 2}', '--virtual-time-budget=15000',
                         f'--screenshot={png}', f'http://127.0.0.1:{httpd.server_port}/{doc}.html',
                         profile=tmp_path_factory.mktemp('chromium')),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=True,
            )  # fmt: skip
            img = Image.open(png).convert('RGB')
            plain = Image.new('RGB', img.size, img.getpixel((img.width // 2, img.height // 2)))
            diff = ImageChops.difference(img, plain).convert('L')
            inked = diff.point(lambda v: 255 if v > 40 else 0).histogram()[255]
            mean = ImageStat.Stat(diff).mean[0]
            print(f'screenshot {png}: {inked} pixels differ from a plain image (mean difference {mean:.1f})')
            assert inked > 0.01 * img.width * img.height, f'{png} is (nearly) blank'
            assert len(img.getcolors(1 << 24)) > 50, f'{png} has too few colours to be a page'
    finally:
        httpd.shutdown()
