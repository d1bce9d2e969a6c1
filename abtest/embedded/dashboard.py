"""The live dashboard at /dashboard: per endpoint the variants, the decision, the history,
the lifecycle state with the actions allowed now, and the audit log.

The page is static (`dashboard_files/`): its script calls `POST /admin/list` and, for the
endpoint picked (a button each when there are several; one endpoint is shown at a time),
`POST /stats`, `/history` and `/admin/show`, of the API it was served with, every
few seconds, draws with plotly.js, and calls the admin route of an action clicked. The chart
library comes from the `plotly` package, which ships the minified plotly.js bundle it
renders with (`plotly/package_data/plotly.min.js`), so nothing is fetched from the internet
and `pip install -U plotly` keeps it current; plotly's Python side is never imported.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

PAGE = "/dashboard"
REFRESH_SECONDS = 5
_FILES = Path(__file__).with_name("dashboard_files")

# The page's files: path -> (content type, where it is read from).
ASSETS = {
    f"{PAGE}/dashboard.js": "application/javascript; charset=utf-8",
    f"{PAGE}/dashboard.css": "text/css; charset=utf-8",
    f"{PAGE}/plotly.min.js": "application/javascript; charset=utf-8",
}


def answer(path: str, endpoints: Sequence[str], *, docs: bool = True) -> tuple[str, bytes] | None:
    """(content type, body) for a GET of the page or one of its files; None otherwise.

    `endpoints` are the endpoints the page shows where the API cannot list them (the
    server's, or those given to `abtest dashboard`); `docs` whether /docs is served beside
    it (it links there)."""
    if path in (PAGE, PAGE + "/"):
        return "text/html; charset=utf-8", page_html(endpoints, docs=docs)
    if path in ASSETS:
        return ASSETS[path], _asset(path)
    return None


def page_html(endpoints: Sequence[str], *, docs: bool = True) -> bytes:
    settings = json.dumps(
        {"endpoints": list(endpoints), "refreshSeconds": REFRESH_SECONDS, "docs": docs}
    )
    # `</` cannot end the script early: endpoint names are letters, digits and hyphens anyway.
    settings = settings.replace("</", "<\\/")
    template = (_FILES / "dashboard.html").read_text()
    return template.replace("{{SETTINGS}}", settings).encode()


@functools.cache
def _asset(path: str) -> bytes:
    name = path.removeprefix(PAGE + "/")
    if name == "plotly.min.js":
        return (_plotly_package() / "package_data" / name).read_bytes()
    return (_FILES / name).read_bytes()


@functools.cache
def _plotly_package() -> Path:
    # find_spec locates the package without importing it (its Python side is not needed).
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dashboard needs plotly: pip install 'abtest[local]'")
    return Path(next(iter(spec.submodule_search_locations)))
