"""``GET /v1/usage``: spend and counts per key, provider and model over a time range, summed
from the keys' usage records. An admin key sees every key; any other key only its own."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from app.callers.auth import API_KEY_DEP, BEARER_DEP, Callers
from app.callers.keys import CallerKey
from app.errors import FieldError, InvalidRequest, NotFound, ValidationFailed
from app.record import record_of
from app.state import Record, StateStore

router = APIRouter(tags=["usage"])
_DATE_TIME: dict[str, Any] = {"format": "date-time"}
_PAGE = 1000
_PROBLEM = {
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
}


_LINE_EXAMPLE: Any = {
    "provider": "venice",
    "model": "upscaler",
    "operation": "upscale",
    "requests": 3,
    "images": 3,
    "usd": 0.12,
}


class UsageLine(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_LINE_EXAMPLE]})

    provider: str = Field(description="The provider that served the calls")
    model: str = Field(description="The vendor model")
    operation: str = Field(description="upscale or generate")
    requests: int = Field(description="Successful calls (refused or failed ones cost nothing)")
    images: int = Field(description="Images returned")
    usd: float = Field(description="Their cost from the price table, in USD")


class KeyUsage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"key": "team-a", "requests": 3, "images": 3, "usd": 0.12,
                 "by_model": [_LINE_EXAMPLE]}
            ]
        }
    )  # fmt: skip

    key: str = Field(description="The caller key id")
    requests: int = Field(description="Successful calls in the range")
    images: int = Field(description="Images returned in the range")
    usd: float = Field(description="What they cost, in USD")
    by_model: list[UsageLine] = Field(description="The same, per provider, model and operation")


class UsageReport(BaseModel):
    start: datetime = Field(description="Start of the range (inclusive)")
    end: datetime = Field(description="End of the range (exclusive)")
    usd: float = Field(description="Sum over every key in the report")
    keys: list[KeyUsage] = Field(description="One entry per key the caller may read")


async def _caller(
    request: Request, bearer: Any = BEARER_DEP, api_key: Any = API_KEY_DEP
) -> CallerKey:
    callers: Callers = request.app.state.callers
    if not callers.enabled or callers.ledger is None:
        raise NotFound("usage is recorded per caller key, and caller keys are off")
    key = await callers.authenticate(request.headers)
    record_of(request).caller = key.id
    return key


@router.get(
    "/v1/usage",
    operation_id="usage",
    summary="Spend and counts per key, provider and model",
    response_model=UsageReport,
    responses={
        400: {"description": "start or end is not an ISO 8601 date-time", **_PROBLEM},
        422: {"description": "start is not before end", **_PROBLEM},
        401: {"description": "No key, or an unknown or revoked key", **_PROBLEM},
        404: {
            "description": "Caller keys are off, or another key's usage without an admin key",
            **_PROBLEM,
        },
    },
)
async def usage(
    request: Request,
    key: str | None = None,
    start: Annotated[str | None, Query(json_schema_extra=_DATE_TIME)] = None,
    end: Annotated[str | None, Query(json_schema_extra=_DATE_TIME)] = None,
    caller: CallerKey = Depends(_caller),  # noqa: B008
) -> UsageReport:
    """`start`/`end`: ISO 8601 (UTC when no offset is given); by default the current UTC
    month up to now. `key`: one key's usage (an admin key may name any key; without it an
    admin sees every key)."""
    callers: Callers = request.app.state.callers
    assert callers.ledger is not None
    begin, until = _range(start, end)
    keys = _keys_for(caller, key, callers)
    report = [await _key_usage(callers.ledger.store, k, begin, until) for k in keys]
    total = round(sum(k.usd for k in report), 6)
    return UsageReport(start=begin, end=until, usd=total, keys=report)


def _range(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    until = _parse("end", end) if end is not None else now
    begin = (
        _parse("start", start)
        if start is not None
        else datetime(now.year, now.month, 1, tzinfo=UTC)
    )
    if begin >= until:
        raise ValidationFailed(
            "start must be before end", errors=[FieldError(("query", "start"), "not before end")]
        )
    return begin, until


def _parse(name: str, value: str) -> datetime:
    """An ISO 8601 date-time (UTC when no offset is given); numbers are not accepted."""
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z",
            errors=[FieldError(("query", name), "not an ISO 8601 date-time")],
        ) from None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _keys_for(caller: CallerKey, asked: str | None, callers: Callers) -> list[str]:
    if asked is not None and asked != caller.id and not caller.admin:
        # As with jobs, another key's usage is not even said to exist.
        raise NotFound(f"no usage of key {asked!r} that key {caller.id!r} may read")
    if asked is not None:
        return [asked]
    return sorted(callers.ring.keys) if caller.admin else [caller.id]


async def _key_usage(store: StateStore, key: str, begin: datetime, until: datetime) -> KeyUsage:
    lines: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for record in await _records(store, f"usage:{key}", begin.timestamp(), until.timestamp()):
        fields = record.fields
        line = lines[(fields["provider"], fields["model"], fields["operation"])]
        line[0] += 1
        line[1] += int(fields.get("images", 0))
        line[2] += float(fields.get("usd", 0.0))
    by_model = [
        UsageLine(provider=p, model=m, operation=o, requests=int(r), images=int(i), usd=round(u, 6))
        for (p, m, o), (r, i, u) in sorted(lines.items())
    ]
    return KeyUsage(
        key=key,
        requests=sum(line.requests for line in by_model),
        images=sum(line.images for line in by_model),
        usd=round(sum(line.usd for line in by_model), 6),
        by_model=by_model,
    )


async def _records(store: StateStore, log: str, since: float, until: float) -> list[Record]:
    """Every record in the range, page by page. A page ends on a timestamp whose other
    records may start the next page: those already seen are skipped by count."""
    out: list[Record] = []
    while True:
        page = await store.records(log, since, until, limit=_PAGE)
        seen_at_since = sum(1 for r in out if r.at == since)
        fresh = page[seen_at_since:] if page and page[0].at == since else page
        out.extend(fresh)
        if len(page) < _PAGE or not fresh:
            return out
        since = page[-1].at
