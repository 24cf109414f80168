"""openapi/openapi.json is exactly what the app serves (re-export with `make openapi`), and
it follows the contract's rules on EVERY operation, so a new route has to as well
(docs/design-notes.md, "The OpenAPI contract"): one request media type and one success
media type per operation, every status with the problem schema and an example, every
header declared, a description on every property, a ``code`` enum that lists each
``GatewayError`` code."""

import json
from typing import Any

import pytest
from openapi_spec_validator import validate

from app import errors
from scripts.export_openapi import SPEC_PATH, render_spec

SPEC: dict[str, Any] = json.loads(render_spec())
OPERATIONS = [
    (path, method, op)
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in ("get", "post", "put", "patch", "delete")
]
_IDS = [f"{m.upper()} {p}" for p, m, _ in OPERATIONS]


def test_committed_spec_matches_the_app_byte_for_byte() -> None:
    assert SPEC_PATH.read_text(encoding="utf-8") == render_spec(), "run `make openapi`"


def test_the_spec_is_valid_openapi() -> None:
    validate(SPEC)


def test_every_ref_resolves_and_servers_are_declared() -> None:
    schemas = SPEC["components"]["schemas"]
    for ref in _walk(SPEC, "$ref"):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert SPEC["servers"] and all(s.get("url") for s in SPEC["servers"])


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=_IDS)
def test_one_request_and_one_success_shape_per_operation(
    path: str, method: str, op: dict[str, Any]
) -> None:
    """Generators keep one request media type (openapi-generator drops multipart beside
    JSON) and cannot type a success that is JSON or bytes: one each per operation, bytes
    answers only as binary."""
    assert op.get("operationId") and op.get("summary"), "operationId and summary"
    body = op.get("requestBody", {}).get("content", {})
    assert len(body) <= 1, f"{path}: one request media type per operation"
    for media in body.values():
        assert "example" in media or _is_multipart(body), f"{path}: a request example"
    ok = op["responses"]["200"].get("content", {})
    kinds = {"json" if "json" in t else "bytes" if _binary(s) else "text" for t, s in ok.items()}
    assert len(kinds) <= 1, f"{path}: JSON and bytes answers need operations of their own"


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=_IDS)
def test_every_response_declares_its_headers_and_problems(
    path: str, method: str, op: dict[str, Any]
) -> None:
    responses = op["responses"]
    assert "500" in responses, f"{path}: every operation can answer 500"
    if method == "post":
        # The OpenAI-compatible routes answer 415 and 422 as 400 (OpenAI's error shape).
        openai = path.startswith("/v1/images/")
        for status in ("400", "413") if openai else ("400", "413", "415", "422"):
            assert status in responses, f"{path}: POST answers {status}"
    for status, response in responses.items():
        assert response.get("description"), f"{path} {status}: description"
        headers = response.get("headers", {})
        for name in ("X-Request-ID", "Server-Timing"):
            assert name in headers, f"{path} {status}: {name} header"
        if status in ("429", "503") and status in responses and _is_problem(response):
            assert "Retry-After" in headers, f"{path} {status}: Retry-After"
        if status[0] in "45" and _is_problem(response):
            media = response["content"]["application/problem+json"]
            assert "example" in media, f"{path} {status}: a problem example"
            assert media["example"]["code"] in _codes()


def test_problem_code_is_an_enum_of_every_gateway_error_code() -> None:
    schemas = SPEC["components"]["schemas"]
    assert schemas["Problem"]["properties"]["code"]["$ref"] == "#/components/schemas/ProblemCode"
    declared = set(schemas["ProblemCode"]["enum"])
    raised = {cls.code for cls in _subclasses(errors.GatewayError)}
    assert raised <= declared, f"add {raised - declared} to app.errors.ProblemCode"
    assert declared == _codes()


def test_every_property_has_a_description_and_every_schema_an_example() -> None:
    undescribed = [
        f"{name}.{prop}"
        for name, schema in SPEC["components"]["schemas"].items()
        for prop, definition in schema.get("properties", {}).items()
        if not definition.get("description")
    ]
    assert not undescribed, f"describe: {undescribed}"


def test_operation_ids_are_stable() -> None:
    """Generated method names come from them: renaming one breaks every client."""
    ids = {op["operationId"] for _, _, op in OPERATIONS}
    assert {
        *("upscale", "upscaleMultipart", "upscaleBytes", "upscaleMultipartBytes"),
        *("generate", "generateBytes", "listProviders", "healthz", "readyz", "metrics"),
        *("openaiCreateImage", "openaiUpscaleImage", "openaiListModels", "openaiRetrieveModel"),
        *("getJob", "getJobResult", "getJobResultBytes", "cancelJob"),
        *("upscaleDryRun", "generateDryRun"),
        "openaiImageResult",
        "usage",
    } <= ids


def test_generate_never_offers_local() -> None:
    generate = SPEC["components"]["schemas"]["GenerateRequest"]["properties"]["provider"]
    upscale = SPEC["components"]["schemas"]["UpscaleRequest"]["properties"]["provider"]
    assert "local" not in json.dumps(generate) and "local" in json.dumps(upscale)


def test_request_bodies_carry_no_defaults() -> None:
    """A ``default`` makes openapi-typescript type an optional field as required."""
    for name in ("UpscaleRequest", "UpscaleForm", "GenerateRequest", "GenerateBytesRequest"):
        schema = SPEC["components"]["schemas"][name]
        assert not [p for p, d in schema["properties"].items() if "default" in d], name


def test_no_object_is_a_default() -> None:
    """openapi-generator's Go writes an object default as code that does not compile."""
    assert not [d for d in _walk(SPEC, "default") if isinstance(d, dict)]


def test_multipart_file_fields_are_binary() -> None:
    form = SPEC["paths"]["/v1/upscale/multipart"]["post"]["requestBody"]["content"]
    assert form["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/UpscaleForm"}
    image = SPEC["components"]["schemas"]["UpscaleForm"]["properties"]["image"]
    assert (image["type"], image["format"]) == ("string", "binary")


def _codes() -> set[str]:
    return {code.value for code in errors.ProblemCode}


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def _is_problem(response: dict[str, Any]) -> bool:
    return "application/problem+json" in response.get("content", {})


def _is_multipart(content: dict[str, Any]) -> bool:
    return "multipart/form-data" in content


def _binary(media: dict[str, Any]) -> bool:
    return media.get("schema", {}).get("format") == "binary"


def _walk(node: object, key: str) -> list[Any]:
    if isinstance(node, dict):
        found = [node[key]] if key in node and (key != "$ref" or isinstance(node[key], str)) else []
        return found + [r for value in node.values() for r in _walk(value, key)]
    if isinstance(node, list):
        return [r for value in node for r in _walk(value, key)]
    return []
