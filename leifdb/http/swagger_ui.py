"""The interactive Swagger UI, served from the files shipped in ``swagger_ui_bundle``.

No CDN: nodes often run where there is no internet. The bundle's own page and initializer
point at a demo document, so we serve our own two small files and take only the static
assets (scripts, styles, icons, source maps) from the bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import swagger_ui_bundle

__all__ = ["SwaggerUi"]

_CONTENT_TYPES = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".png": b"image/png",
    ".map": b"application/json",
}

_INDEX = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>LeifDb Client API</title>
    <link rel="stylesheet" type="text/css" href="swagger-ui.css">
    <link rel="icon" type="image/png" href="favicon-32x32.png" sizes="32x32">
    <link rel="icon" type="image/png" href="favicon-16x16.png" sizes="16x16">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"""

# validatorUrl null: the default would call validator.swagger.io from the user's browser.
_INITIALIZER = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: %(url)s,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  });
};
"""

INDEX_NAME = "index.html"
INITIALIZER_NAME = "swagger-initializer.js"


class SwaggerUi:
    """The UI's files by name. ``document_url`` is where the page fetches the API
    document (``/``, on the same node)."""

    def __init__(self, document_url: str = "/", assets: Path | None = None) -> None:
        self._assets = Path(assets if assets is not None else swagger_ui_bundle.swagger_ui_path)
        self._names = frozenset(
            p.name
            for p in self._assets.iterdir()
            if p.is_file() and p.suffix in _CONTENT_TYPES and p.name != INITIALIZER_NAME
        )
        self._generated = {
            INDEX_NAME: (_INDEX.encode("utf-8"), b"text/html; charset=utf-8"),
            INITIALIZER_NAME: (
                (_INITIALIZER % {"url": json.dumps(document_url)}).encode("utf-8"),
                b"text/javascript; charset=utf-8",
            ),
        }

    def names(self) -> frozenset[str]:
        """Every file name ``file`` serves."""
        return self._names | frozenset(self._generated)

    def file(self, name: str) -> tuple[bytes, bytes] | None:
        """``(content, content_type)`` of the named file, or None. Only names listed at
        start-up are served, so no path can escape the asset folder."""
        if name in self._generated:
            return self._generated[name]
        if name not in self._names:
            return None
        path = self._assets / name
        return path.read_bytes(), _CONTENT_TYPES[path.suffix]
