"""/dashboard's files over HTTP: the page names the server's endpoint and loads only files
the server serves itself (the browser tests check what it draws)."""

from __future__ import annotations

import json
import re

import httpx

from abtest.embedded import dashboard
from tests.embedded.helpers import ENDPOINT


def test_the_page_and_every_file_it_loads_are_served_here(start_server, http: httpx.Client):
    server = start_server()
    page = http.get(f"{server.url}/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    settings = json.loads(re.search(r"window\.ABTEST = (\{.*?\});", page.text).group(1))
    assert settings["endpoints"] == [ENDPOINT]
    loaded = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
    assert set(dashboard.ASSETS) <= set(loaded)
    assert "://" not in page.text  # nothing from elsewhere
    for asset, content_type in dashboard.ASSETS.items():
        served = http.get(f"{server.url}{asset}")
        assert served.status_code == 200 and served.content, asset
        assert served.headers["content-type"] == content_type
    plotly = http.get(f"{server.url}/dashboard/plotly.min.js").text
    assert plotly.lstrip().startswith("/**") and "plotly.js v" in plotly[:200]
    assert http.get(f"{server.url}/health").json()["dashboard"] == "/dashboard"
