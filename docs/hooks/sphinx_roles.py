"""griffe extension for the API reference (mkdocs.yml): the docstrings' Sphinx roles as cross-references.

flowlab's docstrings name objects as Sphinx does, ``:class:`~flowlab.errors.ShapeError```; mkdocstrings renders
Markdown. Each role becomes an *optional* autorefs reference: a link where the site documents the object, its name
in code where it does not (an optional reference never fails ``mkdocs build --strict``). ``~`` keeps the last
component of the name, as in Sphinx.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|exc|obj):`(~?)([\w.]+)`")


def reference(match: re.Match[str]) -> str:
    tilde, path = match.groups()
    title = path.rsplit(".", 1)[-1] if tilde else path
    return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring once the object tree is built."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(reference, obj.docstring.value)
