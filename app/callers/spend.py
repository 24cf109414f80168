"""What a call costs and who spent it: the estimate before the call, the actual cost after
it, the cost counter, and (with a state store) the key's budgets and usage records."""

from __future__ import annotations

from starlette.requests import Request

from app import metrics
from app.callers.auth import ANONYMOUS
from app.callers.keys import CallerKey
from app.domain import Job, Outcome, PreparedCall
from app.errors import FieldError, Forbidden, InvalidRequest
from app.providers.pricing import Cost, PriceTable, actual_facts, estimate_facts

COST_HEADER = "x-image-gateway-cost-usd"
_TRUTH = {"true": True, "1": True, "false": False, "0": False, "": False}


def usd_text(usd: float) -> str:
    return f"{usd:.6f}"


def dry_run_asked(request: Request) -> bool:
    """``?dry_run=true``: validate, route and price the request without calling a vendor."""
    given = request.query_params.get("dry_run")
    if given is None:
        return False
    value = _TRUTH.get(given.strip().lower())
    if value is None:
        raise InvalidRequest(
            "dry_run must be true or false",
            errors=[FieldError(("query", "dry_run"), "not a boolean")],
        )
    return value


def providers_of(key: CallerKey | None, job: Job) -> frozenset[str] | None:
    """The providers routing may pick for this key; asking for another one is a 403."""
    if key is None:
        return None
    asked = job.params.provider
    if asked is not None and not key.may_use(asked):
        raise Forbidden(f"key {key.id!r} may not use provider {asked!r}", reason="scope")
    return frozenset(key.providers)


def caller_label(key: CallerKey | None) -> str:
    """The bounded ``caller`` metric label: the operator-defined key id, or anonymous."""
    return key.id if key is not None else ANONYMOUS


class Spending:
    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices

    def estimate(self, job: Job, call: PreparedCall) -> Cost:
        return self.prices.cost(call.provider, call.model, call.operation, estimate_facts(job))

    def actual(self, job: Job, outcome: Outcome) -> Cost:
        facts = actual_facts(job, outcome.result)
        return self.prices.cost(outcome.provider, outcome.result.model, job.operation, facts)

    async def check_budget(self, key: CallerKey | None, estimate: Cost) -> None:
        """Refuse a call whose estimate would take the key over a budget (state store)."""

    async def record(self, key: CallerKey | None, job: Job, outcome: Outcome, cost: Cost) -> None:
        metrics.COST_USD.labels(
            provider=outcome.provider,
            model=outcome.result.model,
            operation=job.operation.value,
            caller=caller_label(key),
        ).inc(cost.usd)
