"""The OpenAPI document's example bodies name the demo endpoint and its own variants, so that
"Try it out" in /docs on `abtest serve --config abtest/demo/reviews.toml` sends names it serves."""

from __future__ import annotations

import json
from pathlib import Path

import abtest.demo
from abtest.embedded.config import load_config
from abtest.http.openapi import openapi_json

DEMO_CONFIG = Path(abtest.demo.__file__).with_name("reviews.toml")


def test_every_example_names_the_demo_endpoint_and_only_its_variants() -> None:
    demo = load_config(DEMO_CONFIG).endpoint
    variants = {variant.name for variant in demo.variants}
    schemas = json.loads(openapi_json())["components"]["schemas"]
    examples = [(name, ex) for name, schema in schemas.items() for ex in schema.get("examples", [])]
    assert examples
    for name, example in examples:
        assert example.get("endpoint_name", demo.endpoint_name) == demo.endpoint_name, name
        named = set(example.get("weights", {}))
        named |= {example[key] for key in ("winner", "variant") if key in example}
        if name == "AddVariantRequest":  # names the variant it adds, which must be new
            assert example["variant"] not in variants
            named.discard(example["variant"])
        assert named <= variants, f"{name}: {sorted(named - variants)} not on the demo endpoint"
