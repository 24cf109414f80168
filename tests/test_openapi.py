"""openapi/openapi.json is exactly what the app serves (re-export with `make openapi`)."""

import json

from scripts.export_openapi import SPEC_PATH, render_spec


def test_committed_spec_matches_the_app_byte_for_byte() -> None:
    assert SPEC_PATH.read_text(encoding="utf-8") == render_spec(), "run `make openapi`"


def test_multipart_file_fields_are_binary_and_operation_ids_are_stable() -> None:
    spec = json.loads(render_spec())
    schemas = spec["components"]["schemas"]
    assert schemas["UpscaleForm"]["properties"]["image"] == {
        "description": "The image file.",
        "format": "binary",
        "title": "Image",
        "type": "string",
    }
    body = spec["paths"]["/v1/upscale"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/UpscaleForm"}
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/UpscaleRequest"}
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert ids == {
        *("upscale", "generate", "listProviders", "healthz", "readyz", "metrics"),
        *("openaiCreateImage", "openaiUpscaleImage", "openaiListModels", "openaiRetrieveModel"),
        "openaiImageResult",
        *("getJob", "getJobResult", "cancelJob"),
    }
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
