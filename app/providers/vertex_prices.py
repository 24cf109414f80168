"""Vertex AI prices as data (beside ``vertex_limits.py``; applied by ``pricing.py``).

Google's price page is not among the stored sources, so every row is UNCONFIRMED: third-
party readings quoted in vendors-2026.md §2.7, or placeholders where none was found.
Gemini image models are billed per output token; an image's token count depends on its
``imageSize`` tier (vendors-2026.md §2.2), and the actual cost uses the IMAGE tokens the
vendor reports in ``usageMetadata`` when the result carries them.
"""

from __future__ import annotations

from datetime import date

from app.providers.base import Operation
from app.providers.pricing import ANY_MODEL, Price, PriceTier

READ = date(2026, 11, 30)
GEN, UP = Operation.GENERATE, Operation.UPSCALE
_SRC_27 = "vendors-2026.md §2.7 (third-party reading: {})"
_PLACEHOLDER = "no stored reading; a placeholder until the operator overrides it"
_TOKENS = "output image tokens: imageSize tier x tokens per image (vendors-2026.md §2.2)"


def _per_image(model: str, usd: float, source: str, operation: Operation = GEN) -> Price:
    return Price(
        provider="vertex",
        model=model,
        operation=operation,
        tiers=(PriceTier(usd=usd),),
        source=source,
        read_on=READ,
    )


def _per_token(model: str, usd_per_million: float, tokens: dict[str, int], source: str) -> Price:
    per_token = usd_per_million / 1_000_000
    tiers = tuple(
        PriceTier(usd=per_token, image_size=size, tokens_per_image=count)
        for size, count in tokens.items()
    )
    return Price(
        provider="vertex",
        model=model,
        operation=GEN,
        unit="output_token",
        tiers=tiers,
        depends_on=_TOKENS,
        source=source,
        read_on=READ,
    )


_FLASH_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}

PRICES: tuple[Price, ...] = (
    # $30/1M image tokens, 1290 tokens per (1K) image: ~$0.039.
    _per_token(
        "gemini-2.5-flash-image",
        30.0,
        {"1K": 1290},
        _SRC_27.format("github.com/lobehub/lobe-chat commit ae3ed6e"),
    ),
    # $0.134 per 1K/2K image (1120 tokens) and $0.24 per 4K image (2000 tokens): $120/1M.
    _per_token(
        "gemini-3-pro-image",
        120.0,
        {"1K": 1120, "2K": 1120, "4K": 2000},
        _SRC_27.format("aifreeapi.com, Gemini API page"),
    ),
    # $0.0672 per 1K image (1120 tokens): $60/1M.
    _per_token(
        "gemini-3.1-flash-image",
        60.0,
        _FLASH_TOKENS,
        _SRC_27.format("getmaxim.ai, Vertex preview ID"),
    ),
    # $30/1M, ~$0.0336 at 1K; tokens per tier above 1K assumed as for 3.1 Flash Image.
    _per_token("gemini-nano-banana-2.1", 30.0, _FLASH_TOKENS, _SRC_27.format("TP-NB21")),
    _per_image("imagen-4.0-ultra-generate-001", 0.06, "magichour.ai Imagen 4 pricing (2026)"),
    _per_image("imagen-4.0-generate-001", 0.04, "magichour.ai Imagen 4 pricing (2026)"),
    _per_image("imagen-4.0-fast-generate-001", 0.02, "magichour.ai Imagen 4 pricing (2026)"),
    _per_image("imagen-3.0-generate-002", 0.04, "jovanstudios.com Vertex Imagen 3 rate card"),
    _per_image("imagen-3.0-generate-001", 0.04, "jovanstudios.com Vertex Imagen 3 rate card"),
    _per_image("imagen-3.0-fast-generate-001", 0.02, _PLACEHOLDER),
    _per_image(ANY_MODEL, 0.04, _PLACEHOLDER),
    _per_image("imagen-4.0-upscale-preview", 0.06, "magichour.ai Imagen 4 pricing (2026)", UP),
    _per_image(ANY_MODEL, 0.04, "jovanstudios.com Vertex Imagen 3 rate card (upscale)", UP),
)
