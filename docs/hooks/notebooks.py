"""mkdocs hook (mkdocs.yml): the notebook pages of the site, the tutorials and the exercises.

mkdocs-jupyter renders their Markdown sources as notebooks (unexecuted: the pictures are those the pages embed, from
the full-length runs), bypassing mkdocs's handling of links. This hook

- resolves the relative links and images of a notebook page as mkdocs does for Markdown pages (``../notebooks.md``
  becomes the URL of that page, ``../images/x.png`` the URL of the image), and warns about a target that is not
  in docs/ (so ``mkdocs build --strict`` fails on a broken link there too);
- writes each notebook's ``.ipynb``, converted by jupytext, next to its page, with a link to it at the top.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jupytext

log = logging.getLogger("mkdocs.hooks.notebooks")
#: a link or an image in the rendered HTML
LINK = re.compile(r'(?P<attribute>href|src)="(?P<url>[^"]*)"')

#: the folders of docs/ whose pages are notebooks
NOTEBOOK_FOLDERS = ("tutorial/", "exercises/")
_written: dict[str, Path] = {}


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    source = page.file.src_uri
    if not source.startswith(NOTEBOOK_FOLDERS):
        return html
    html = LINK.sub(lambda match: _resolved(match, page, files), html)
    notebook = str(Path(source).with_suffix(".ipynb").as_posix())
    _written[notebook] = Path(page.file.abs_src_path)
    here = posixpath.dirname(page.file.dest_uri)
    download = posixpath.relpath(notebook, here)
    guide = posixpath.relpath("notebooks/index.html" if config["use_directory_urls"] else "notebooks.html", here)
    return (
        f'<p><a href="{download}" download>Download this page as a notebook (.ipynb)</a>, to run in Jupyter or on '
        f'Colab: <a href="{guide}">how</a>.</p>\n' + html
    )


def _resolved(match: re.Match[str], page: Any, files: Any) -> str:
    """The link as the site serves it: a relative path into docs/ becomes the URL of its target from this page."""
    url = match["url"]
    parts = urlsplit(url)
    if not url or parts.scheme or parts.netloc or url.startswith(("#", "/")):
        return match.group(0)
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), parts.path))
    found = files.get_file_from_path(target)
    if found is None:
        log.warning("%s links to %r, which is not in docs/", page.file.src_uri, url)
        return match.group(0)
    resolved = found.url_relative_to(page.file) + (f"#{parts.fragment}" if parts.fragment else "")
    return f'{match["attribute"]}="{resolved}"'


def on_post_build(config: Any) -> None:
    for notebook, source in _written.items():
        target = Path(config["site_dir"]) / notebook
        target.parent.mkdir(parents=True, exist_ok=True)
        jupytext.write(jupytext.read(source), target, fmt="ipynb")
