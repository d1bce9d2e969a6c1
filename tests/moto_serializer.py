"""moto's response serializer with the keys it looks a member up by resolved once.

To find a member's value in a result, moto (5.2) builds a context and asks each of six
alias providers, per member, per response, which keys to try (the member's name, its
shape's name, their snake_case forms, a prefix-stripped form ...). An AttributeValue has
ten members, so reading a DynamoDB item of a few hundred attributes asks the providers
thousands of times: serializing was 38 % of the fault-injection test's profile (13.4 of
35 s under cProfile, 1.76 million `get_possible_keys` calls), 2.4 s with the keys kept.
For a plain dict the answer depends only on the member's name and its shape (with the
structure that shape belongs to): the providers also look at the object's class name,
always `dict`, and at a `Meta` attribute a dict cannot have. So it is asked once per
member and kept; the value is then the first of those keys the dict holds, as moto
picks it. Anything else (an object,
an exception, a response with transformers, another picker) goes through moto's own code.
`tests/test_moto_serializer.py` checks that every answer is the same byte for byte.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.model import Shape
from moto.core.serialize import (
    DEFAULT_ALIAS_PROVIDERS,
    AttributePickerContext,
    ResponseSerializer,
    XFormedAttributePicker,
)

_MISSING = object()
_original_get_value = ResponseSerializer.get_value

# (member name, member shape) -> the keys moto tries, in order. A member shape belongs
# to one structure (botocore builds a structure's member shapes for it alone, once), so
# it also stands for the structure the providers look at. The shapes are held here, so
# their ids are never reused while they are keys. None: a key with a dot (a path in
# moto's lookup), left to moto's own code.
_keys: dict[tuple[str, Shape], tuple[str, ...] | None] = {}


def _resolved_keys(
    serializer: ResponseSerializer, value: dict[str, Any], key: str, shape: Shape
) -> tuple[str, ...] | None:
    cache_key = (key, shape)
    try:
        return _keys[cache_key]
    except KeyError:
        pass
    context = AttributePickerContext(
        obj=value,
        key=key,
        shape=shape,
        operation_model=serializer.operation_model,
        service_model=serializer.operation_model.service_model,
        key_path=".".join(serializer.path),
    )
    picker: XFormedAttributePicker = serializer._value_picker
    keys = tuple(picker.get_possible_keys(context))
    resolved = None if any("." in possible for possible in keys) else keys
    _keys[cache_key] = resolved
    return resolved


def _get_value(self: ResponseSerializer, value: Any, key: str, shape: Shape) -> Any:
    """ResponseSerializer.get_value, with a plain dict's keys resolved once per member."""
    picker = self._value_picker
    if (
        type(value) is not dict
        or type(picker) is not XFormedAttributePicker
        or picker.response_transformers
        or picker.alias_providers is not DEFAULT_ALIAS_PROVIDERS
    ):
        return _original_get_value(self, value, key, shape)
    keys = _resolved_keys(self, value, key, shape)
    if keys is None:
        return _original_get_value(self, value, key, shape)
    for possible in keys:
        found = value.get(possible, _MISSING)
        if found is not _MISSING:
            return found
    return None


def resolve_member_keys_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch moto's serializer for the test `monkeypatch` belongs to."""
    monkeypatch.setattr(ResponseSerializer, "get_value", _get_value)
