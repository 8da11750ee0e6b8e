"""HTML reports from jinja2 templates (src/artshield/templates), autoescaped.

Pictures are shown at their native size; small ones are enlarged by a whole factor with
nearest-neighbour scaling (so pixels stay pixels), and only pictures wider than the page are shown
smaller, saying so. Every picture is labelled with its size and links to its full file. Images are referenced by relative paths, so a report folder can be moved
or zipped as a whole.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


@dataclass
class Figure:
    """A picture of the report: its file (relative to the page), its label, its native size, and
    `tile`: the side of one image when the file is a grid of them (the enlargement is chosen so
    each tile is at least `min_tile` pixels on screen)."""

    src: str
    label: str
    width: int
    height: int
    tile: int | None = None
    note: str = ""
    min_tile: int = 128
    max_width: int = 1200

    @property
    def scale(self) -> int:
        """The whole enlargement factor (1: native size, or shrunk to fit when wider than the page)."""
        side = self.tile or min(self.width, self.height)
        want = max(1, math.ceil(self.min_tile / max(1, side)))
        fit = max(1, self.max_width // max(1, self.width))       # do not enlarge past the page width
        return min(want, fit)

    @property
    def href(self) -> str:
        """The file as a URL relative to the page (spaces, '#', '?' and the like percent-encoded)."""
        import os
        from urllib.parse import quote

        # the name's bytes as the file system holds them: a non-UTF-8 name is percent-encoded byte by byte
        return self.src if self.src.startswith("file:") else quote(os.fsencode(self.src), safe="/")

    @property
    def percent(self) -> int | None:
        """Only for pictures wider than the page: the share of their native size they are shown at."""
        return int(100 * self.max_width / self.width) if self.width > self.max_width else None

    @property
    def shown_width(self) -> int:
        return self.max_width if self.percent else self.width * self.scale

    @property
    def shown_height(self) -> int:
        return round(self.height * self.max_width / self.width) if self.percent else self.height * self.scale


def figure(src: str, label: str, image, tile: int | None = None, note: str = "", min_tile: int = 128) -> Figure:
    """A Figure for an image tensor (C, H, W) or (N, C, H, W) written at `src`."""
    h, w = int(image.shape[-2]), int(image.shape[-1])
    return Figure(src, label, w, h, tile=tile, note=note, min_tile=min_tile)


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("artshield", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return env


def render(template: str, **context) -> str:
    """The page `template` (a file of src/artshield/templates) filled with `context`."""
    from . import __version__

    context.setdefault("command", None)
    return _environment().get_template(template).render(version=__version__, **context)
