"""What a call costs and who spent it: the estimate before the call, the actual cost after
it, the cost counter, and (with a state store) the key's budgets and usage records."""

from __future__ import annotations

from starlette.requests import Request

from app import metrics
from app.callers.auth import ANONYMOUS, Callers
from app.callers.budgets import Reservation
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
    def __init__(self, prices: PriceTable, callers: Callers) -> None:
        self.prices = prices
        self.callers = callers

    def estimate(self, job: Job, call: PreparedCall) -> Cost:
        return self.prices.cost(call.provider, call.model, call.operation, estimate_facts(job))

    def actual(self, job: Job, outcome: Outcome) -> Cost:
        facts = actual_facts(job, outcome.result)
        return self.prices.cost(outcome.provider, outcome.result.model, job.operation, facts)

    async def check_budget(
        self, key: CallerKey | None, estimate: Cost, dry_run: bool = False
    ) -> Reservation | None:
        """402 when the estimate would take the key over a budget. A real call reserves the
        estimate (settled or released after the call); a dry run only reads."""
        ledger = self.callers.ledger
        if key is None or ledger is None or not has_budget(key):
            return None
        if dry_run:
            await ledger.check(key, estimate)
            return None
        return await ledger.reserve(key, estimate)

    async def release(self, reservations: list[Reservation]) -> None:
        ledger = self.callers.ledger
        for reservation in reservations:
            if ledger is not None:
                await ledger.release(reservation)

    async def record(
        self,
        key: CallerKey | None,
        job: Job,
        outcome: Outcome,
        cost: Cost,
        reservations: list[Reservation],
        request_id: str,
    ) -> None:
        """The cost counter, the key's spend (the reservation of the call that served) and
        its usage record."""
        metrics.COST_USD.labels(
            provider=outcome.provider,
            model=outcome.result.model,
            operation=job.operation.value,
            caller=caller_label(key),
        ).inc(cost.usd)
        ledger = self.callers.ledger
        if key is None or ledger is None:
            return
        for reservation in reservations:
            await ledger.settle(reservation, cost)
        await ledger.record(key, usage_record(job, outcome, cost, request_id))


class CallSpend:
    """One call's budget bookkeeping: the estimate of each provider routing tries, and
    the reservation of the one being tried (a provider that failed spent nothing)."""

    def __init__(
        self, spending: Spending, key: CallerKey | None, job: Job, estimates: list[Cost]
    ) -> None:
        self.spending, self.key, self.job = spending, key, job
        self.estimates = estimates
        self.reservations: list[Reservation] = []
        self.dry_run = False

    async def before_call(self, call: PreparedCall) -> None:
        """Before each vendor call: its estimated cost, checked against (and reserved
        from) the key's budgets."""
        await self.release()
        estimate = self.spending.estimate(self.job, call)
        reservation = await self.spending.check_budget(self.key, estimate, self.dry_run)
        if reservation is not None:
            self.reservations.append(reservation)
        self.estimates.append(estimate)

    async def release(self) -> None:
        await self.spending.release(self.reservations)
        self.reservations.clear()


def has_budget(key: CallerKey) -> bool:
    return key.budget_daily_usd is not None or key.budget_monthly_usd is not None


def usage_record(job: Job, outcome: Outcome, cost: Cost, request_id: str) -> dict[str, object]:
    return {
        "provider": outcome.provider,
        "model": outcome.result.model,
        "operation": job.operation.value,
        "usd": cost.usd,
        "images": len(outcome.result.images),
        "request_id": request_id,
    }
