"""The interactive API docs at /docs: Swagger UI over /openapi.json, every file served here.

The document is OpenAPI 3.1 (the framework's), which Swagger UI reads from 5.0 on. Its
files come from the flask-swagger-ui package, which re-releases each Swagger UI version
(so `pip install -U` keeps them current); only its `dist/` folder is read, Flask is never
imported. Nothing is fetched from the internet, so the page works offline.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

PAGE = "/docs"

PAGE_HTML = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>abtest API</title>
<link rel="stylesheet" href="/docs/index.css">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>
"""

# The page's files, as they are named in the package's dist/ folder.
ASSETS = {
    "/docs/index.css": "text/css; charset=utf-8",
    "/docs/swagger-ui.css": "text/css; charset=utf-8",
    "/docs/swagger-ui-bundle.js": "application/javascript; charset=utf-8",
}


def answer(path: str) -> tuple[str, bytes] | None:
    """(content type, body) for a GET of the docs page or one of its files; None otherwise."""
    if path == PAGE:
        return "text/html; charset=utf-8", PAGE_HTML
    if path in ASSETS:
        return ASSETS[path], _asset(path)
    return None


@functools.cache
def _asset(path: str) -> bytes:
    return (_dist() / path.removeprefix(PAGE + "/")).read_bytes()


@functools.cache
def _dist() -> Path:
    # find_spec locates the package without running its __init__ (which imports Flask).
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the docs need flask-swagger-ui: pip install 'abtest[local]'")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"
