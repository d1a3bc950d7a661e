"""Sphinx configuration of the course website; tools/build_site.py stages the sources and runs Sphinx."""

import configparser
import sys
from pathlib import Path

_cfg = configparser.ConfigParser(delimiters=['='])
_cfg.read(Path(__file__).resolve().parents[2] / 'settings.ini', encoding='utf-8')
_cfg = _cfg['DEFAULT']
sys.path.insert(0, str(Path(__file__).resolve().parent))  # site_docments.py beside this file

project = _cfg['lib_name']
author = _cfg['author']
copyright = _cfg['copyright']
release = version = _cfg['version']

extensions = [
    'myst_nb',  # notebooks and Markdown through MyST
    'sphinx.ext.autodoc',  # the API pages, from signatures and docstrings
    'sphinx.ext.mathjax',
    'sphinx-mathjax-offline',  # MathJax 3 copied into the site: equations render with no network
    'site_docments',  # nbdev's parameter comments in the API pages (tools/site/site_docments.py)
]
root_doc = 'index'
exclude_patterns = ['figures', '**.ipynb_checkpoints']  # figures/ is there for its images only

# the notebooks are committed executed: show their outputs, never run them
nb_execution_mode = 'off'
nb_output_stderr = 'show'
nb_merge_streams = True
nb_render_markdown_format = 'myst'  # `#| output: asis` tables and math
myst_enable_extensions = ['dollarmath', 'amsmath']
myst_dmath_double_inline = True
myst_heading_anchors = 3
suppress_warnings = ['myst.header']  # chapters may skip a heading level

autodoc_member_order = 'bysource'  # the order the chapter teaches them
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True

html_theme = 'sphinx_book_theme'
html_title = 'carma_nb'
html_static_path = ['_static']
html_css_files = ['site.css']
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {
    'home_page_in_toc': True,
    'show_toc_level': 2,
    'use_download_button': False,
    'navigation_with_keys': False,
}
