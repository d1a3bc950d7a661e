"""Sphinx extension: nbdev docstrings on the API pages.

nbdev writes docstrings and docments (the comment after each parameter) in Markdown; autodoc reads
reStructuredText. Here `code` spans become inline literals, `|` and a word's trailing `_` (markup in
reStructuredText) are escaped, and each commented parameter becomes a `:param name:` field.
"""

import inspect
import re

CODE = re.compile(r'(`[^`]+`)')


def rst_inline(text):
    """One line of nbdev Markdown as reStructuredText inline text."""
    parts = CODE.split(text)
    for i, part in enumerate(parts):
        if i % 2:  # a `code` span
            parts[i] = f'``{part[1:-1]}``'
        else:
            part = part.replace('\\', '\\\\').replace('|', '\\|')
            parts[i] = re.sub(r'(\w)_(?=[\s.,;:!?)]|$)', r'\1\\_', part)
    return ''.join(parts)


def add_docments(app, what, name, obj, options, lines):
    """Docstring lines as reStructuredText, then a `:param name: comment` line per commented parameter."""
    lines[:] = [rst_inline(line) for line in lines]
    if what not in ('function', 'method', 'class') or not callable(obj):
        return
    try:
        from fastcore.docments import docments

        docs = docments(obj)
    except Exception:  # no source (builtins, C extensions): the docstring alone
        return
    params = [(k, v) for k, v in docs.items() if v and k not in ('self', 'return')]
    if not params and not docs.get('return'):
        return
    if lines and lines[-1].strip():
        lines.append('')
    lines.extend(f':param {k}: {rst_inline(" ".join(inspect.cleandoc(v).split()))}' for k, v in params)
    if docs.get('return'):
        lines.append(f':returns: {rst_inline(" ".join(inspect.cleandoc(docs["return"]).split()))}')


def setup(app):
    app.connect('autodoc-process-docstring', add_docments)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
