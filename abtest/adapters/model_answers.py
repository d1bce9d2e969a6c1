"""What a model's answer must be for the API to send it on: JSON that UTF-8 can encode.

JSON can carry a lone surrogate ("\\ud800": half of a pair, as a JavaScript model that cut
an emoji in two writes it), but the answer is UTF-8, which cannot: such an answer was a 500
at the response's serialization, after the invocation was logged as a success. Refused in
the model adapters instead, it is the variant's failure (502, logged as an error).
"""

from __future__ import annotations

import json
from typing import Any


def check_encodable(answer: Any, json_text: str | bytes) -> None:
    """UnicodeEncodeError if `answer` holds a lone surrogate; `json_text` is its JSON (the
    model's, or its ASCII encoding), in which only a `\\ud...` escape can bring one. A
    substring search or two on every answer; the exact check only where one is found."""
    if isinstance(json_text, bytes):
        escaped = b"\\ud" in json_text or b"\\uD" in json_text
    else:
        escaped = "\\ud" in json_text or "\\uD" in json_text
    if escaped:  # a surrogate pair (an emoji, say) or half of one
        json.dumps(answer, ensure_ascii=False).encode()
