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

The JSON protocols' structures (DynamoDB's, Firehose's, SageMaker's, SQS's) then read
their members the same way in one loop, as moto's own loop reads them, without its two
calls per member: an AttributeValue leaves nine of its ten members out, and those calls
were 8 % of the fault-injection test's CPU (9.9 s against 10.7 s, and half its system
time). `tests/test_moto_serializer.py` checks that every answer is the same byte for byte.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.model import Shape
from moto.core.model import StructureShape
from moto.core.serialize import (
    DEFAULT_ALIAS_PROVIDERS,
    AttributePickerContext,
    BaseJSONSerializer,
    ResponseSerializer,
    Serialized,
    XFormedAttributePicker,
)

_MISSING = object()
_original_get_value = ResponseSerializer.get_value
_original_json_structure = BaseJSONSerializer._serialize_type_structure

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


def _reads_plain_keys(serializer: ResponseSerializer) -> bool:
    """Whether the serializer picks values as moto's responses do: the default alias
    providers, no response transformers."""
    picker = serializer._value_picker
    return (
        type(picker) is XFormedAttributePicker
        and not picker.response_transformers
        and picker.alias_providers is DEFAULT_ALIAS_PROVIDERS
    )


def _get_value(self: ResponseSerializer, value: Any, key: str, shape: Shape) -> Any:
    """ResponseSerializer.get_value, with a plain dict's keys resolved once per member."""
    if type(value) is not dict or not _reads_plain_keys(self):
        return _original_get_value(self, value, key, shape)
    keys = _resolved_keys(self, value, key, shape)
    if keys is None:
        return _original_get_value(self, value, key, shape)
    for possible in keys:
        found = value.get(possible, _MISSING)
        if found is not _MISSING:
            return found
    return None


def _serialize_json_structure(
    self: BaseJSONSerializer, serialized: Serialized, value: Any, shape: StructureShape, key: str
) -> None:
    """BaseJSONSerializer._serialize_type_structure, a plain dict's members read in its
    loop (moto's ResponseSerializer._serialize_type_structure and
    _serialize_structure_member, with _get_value above)."""
    if (
        type(value) is not dict
        or shape.is_document_type
        or type(self)._serialize_structure_member
        is not ResponseSerializer._serialize_structure_member
        or not _reads_plain_keys(self)
    ):
        _original_json_structure(self, serialized, value, shape, key)
        return
    wrapper = self.MAP_TYPE() if key else serialized
    for member_key, member_shape in shape.members.items():
        member_shape.parent = shape
        keys = _keys.get((member_key, member_shape), ())
        if keys == ():
            keys = _resolved_keys(self, value, member_key, member_shape)
        if keys is None:
            member_value = _original_get_value(self, value, member_key, member_shape)
        else:
            member_value = None
            for possible in keys:
                found = value.get(possible, _MISSING)
                if found is not _MISSING:
                    member_value = found
                    break
        if member_value is not None:
            self._serialize(wrapper, member_value, member_shape, member_key)
    if key:
        self._default_serialize(serialized, wrapper, shape, key)


def resolve_member_keys_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch moto's serializer for the test `monkeypatch` belongs to."""
    monkeypatch.setattr(ResponseSerializer, "get_value", _get_value)
    monkeypatch.setattr(BaseJSONSerializer, "_serialize_type_structure", _serialize_json_structure)
