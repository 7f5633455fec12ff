"""raw: the image step's own output, a sparse GPT disk (what every other format is made from)."""

from __future__ import annotations

from crust.formats.kind import Format

FORMAT = Format(name="raw", help="raw GPT disk (always built)", order=0, convert=None)
