"""The web UI at ``/ui/``: one hand-written page, one script and one style sheet that
browse, edit and watch keys and show the members and leases, through the same API as any
other client.

The files ship inside the package (``leifdb/http/static/ui``) and are read once at
start-up: no framework, no CDN, nothing fetched at run time, so the page works where the
nodes have no internet. It calls the node that served it (writes on a follower follow the
307 to the leader) and, for the cluster panel, each member's ``/health`` across origins,
which the API's CORS headers allow.

Each handler's docstring ends with its OpenAPI 2.0 operation in YAML after ``---``.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from twisted.web.iweb import IRequest

from leifdb.http.errors import ApiError
from leifdb.http.routing import Routes, accepts, api

__all__ = ["CONTENT_SECURITY_POLICY", "INDEX_NAME", "UiRoutes", "WebUi"]

INDEX_NAME = "index.html"

_CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}

# Scripts and styles come from this node only (no inline code); the page may call the
# API of any node, since the cluster panel asks every member for its health.
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; connect-src 'self' http: https:; img-src 'self' data:; "
    b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _packaged() -> Traversable:
    return resources.files("leifdb.http").joinpath("static", "ui")


class WebUi:
    """The UI's files by name, read into memory once (they are a few tens of KiB)."""

    def __init__(self, folder: Traversable | Path | None = None) -> None:
        folder = folder if folder is not None else _packaged()
        self._files = {
            entry.name: (entry.read_bytes(), _CONTENT_TYPES[Path(entry.name).suffix])
            for entry in folder.iterdir()
            if entry.is_file() and Path(entry.name).suffix in _CONTENT_TYPES
        }
        if INDEX_NAME not in self._files:
            raise FileNotFoundError(
                f"the web UI's {INDEX_NAME} is missing from {folder}: reinstall leifdb"
            )

    def names(self) -> frozenset[str]:
        """Every file name ``file`` serves."""
        return frozenset(self._files)

    def file(self, name: str) -> tuple[bytes, bytes] | None:
        """``(content, content_type)`` of the named file, or None. Only the names read at
        start-up are served, so no path can escape the folder."""
        return self._files.get(name)


class UiRoutes(Routes):
    """``/ui/`` and ``/ui/{file}`` (``/ui`` redirects to ``/ui/`` so relative asset URLs
    work)."""

    web_ui: WebUi

    @api.route("/ui/", methods=["GET"], merge_slashes=False)
    @accepts()
    def ui_index(self, request: IRequest) -> bytes:
        """The web UI's page.

        ---
        get:
          tags: [docs]
          summary: The web UI (keys, live changes, members, leases)
          description: >-
            A page to browse keys by prefix, read, create, edit and delete them (the
            revision read is the write's condition, so a conflicting change is shown,
            not overwritten), follow changes live, and see the members' health and the
            leases counting down. It uses this API and ships with the node.
          operationId: getWebUi
          produces: [text/html]
          responses:
            200:
              description: The page; it loads `app.js` and `app.css` from `/ui/`.
            400: BadRequest
            500: InternalError
        """
        return self._ui_file(request, INDEX_NAME)

    @api.route("/ui/<file>", methods=["GET"], merge_slashes=False)
    @accepts()
    def ui_asset(self, request: IRequest, file: str) -> bytes:
        """One file of the web UI, shipped with the package.

        ---
        get:
          tags: [docs]
          summary: A web UI file (page, script, style sheet)
          operationId: getWebUiFile
          produces: [text/html, text/javascript, text/css, application/json]
          parameters:
            - in: path
              name: file
              required: true
              type: string
              x-example: app.js
              description: A file name of the web UI (`index.html`, `app.js`, `app.css`).
          responses:
            200:
              description: The file.
            400: BadRequest
            404: RouteNotFound
            500: InternalError
        """
        return self._ui_file(request, file)

    def _ui_file(self, request: IRequest, name: str) -> bytes:
        found = self.web_ui.file(name)
        if found is None:
            raise ApiError(404, f"no web UI file named {name!r}")
        content, content_type = found
        request.setHeader(b"Content-Type", content_type)
        # Revalidate each time: after an upgrade the page and its script must match.
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Content-Security-Policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"Content-Length", b"%d" % len(content))
        return content
