"""Every picture the README and the docs show is drawn by ``docs/images/make_images.py`` (so it can be redrawn, with
the titles, axes and colour bars ``flowlab``'s pictures carry), and every picture it draws is shown somewhere."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shown_images() -> set[str]:
    """The ``docs/images/*.png`` files that a Markdown page of the README or docs/ displays."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = set()
    for page in pages:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text()):
            path = (page.parent / target).resolve()
            if path.parent == ROOT / "docs" / "images":
                found.add(path.name)
    return found


def test_the_image_script_draws_exactly_the_pictures_the_pages_show():
    spec = importlib.util.spec_from_file_location("make_images", ROOT / "docs" / "images" / "make_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.IMAGES) == shown_images()
    assert all((ROOT / "docs" / "images" / name).is_file() for name in module.IMAGES)
