"""Bodies that once crashed the resolver (a 500, or an unhandled exception on Lambda), for
the test of each runtime: (content type, body) by what makes each hostile."""

from __future__ import annotations

import json

MULTIPART_EURO = '--b\r\nContent-Disposition: form-data; name="endpoint_name"\r\n\r\n€\r\n--b--\r\n'


def hostile_bodies(endpoint_name: str) -> dict[str, tuple[str, str]]:
    prefix = json.dumps({"endpoint_name": endpoint_name, "user_id": "u"})[:-1]
    return {
        "multipart without a boundary": ("multipart/form-data", "endpoint_name=x"),
        "multipart with non-Latin-1 text": ("multipart/form-data; boundary=b", MULTIPART_EURO),
        "JSON nested 1,000 deep": (
            "application/json",
            f'{prefix}, "data": {"[" * 1000}{"]" * 1000}}}',
        ),
        "an integer of 5,000 digits": ("application/json", f'{prefix}, "data": {"1" * 5000}}}'),
        "a float out of range": ("application/json", f'{prefix}, "data": [1e999]}}'),
        "NaN": ("application/json", f'{prefix}, "data": [NaN]}}'),
    }
