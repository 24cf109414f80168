"""The six calls, with the client openapi-python-client generates from openapi/openapi.json.

    python example.py http://localhost:8080 picture.png

(``make test`` runs it against a live gateway and checks what it prints.)
"""

import struct
import sys
from base64 import b64encode
from pathlib import Path

from image_gateway_client import Client
from image_gateway_client.api.images import generate, upscale, upscale_bytes, upscale_multipart
from image_gateway_client.api.providers import list_providers
from image_gateway_client.models import (
    GenerateRequest,
    GenerateRequestProviderType0,
    ImageResponse,
    Problem,
    UpscaleForm,
    UpscaleRequest,
)
from image_gateway_client.types import File


def main(base_url: str, png_path: str) -> None:
    png = Path(png_path).read_bytes()
    client = Client(base_url=base_url, timeout=60)

    # 1. Upscale by multipart file upload.
    form = UpscaleForm(image=File(payload=png, file_name="in.png", mime_type="image/png"), scale=2)
    answer = upscale_multipart.sync(client=client, body=form)
    assert isinstance(answer, ImageResponse), answer
    print("multipart", answer.provider, answer.images[0].width, answer.images[0].height)

    # 2. Upscale by JSON with the image as base64.
    request = UpscaleRequest(image=b64encode(png).decode(), scale=2)
    answer = upscale.sync(client=client, body=request)
    assert isinstance(answer, ImageResponse), answer
    print("json", answer.provider, answer.images[0].width, answer.images[0].height)

    # 3. The same, answered as the PNG's bytes.
    raw = upscale_bytes.sync(client=client, body=request)
    assert isinstance(raw, File), raw
    data = raw.payload.read()
    print("bytes", data[:8] == b"\x89PNG\r\n\x1a\n", *struct.unpack(">II", data[16:24]))

    # 4. Generate through Venice.
    prompt = GenerateRequest(prompt="a lighthouse at dusk", provider=GenerateRequestProviderType0.VENICE)
    answer = generate.sync(client=client, body=prompt)
    assert isinstance(answer, ImageResponse), answer
    print("generate", answer.provider, len(answer.images), answer.images[0].mime_type.value)

    # 5. A 422, read through the typed problem model (Venice makes at most 4 images).
    too_many = GenerateRequest(
        prompt="a lighthouse", provider=GenerateRequestProviderType0.VENICE, n=8
    )
    response = generate.sync_detailed(client=client, body=too_many)
    problem = response.parsed
    assert isinstance(problem, Problem), problem
    print("problem", response.status_code.value, problem.code.value)

    # 6. List the providers.
    providers = list_providers.sync(client=client)
    assert isinstance(providers, list), providers
    print("providers", ",".join(sorted(p.id for p in providers)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
