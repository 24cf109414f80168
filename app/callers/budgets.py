"""Per-key budgets (per UTC day and calendar month, in USD) and usage records, in the state
store so that every replica sees one spend.

Spend is kept as integer micro-dollars in one counter per key and period. Before a vendor
call its estimate is *reserved*: added to the counters atomically, and taken back at once
when the new total is over a budget (402, nothing sent). After the call the reservation
is settled to the actual cost, or released when the call failed. Two replicas racing for
the last cents therefore cannot both spend them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app import metrics
from app.callers.keys import CallerKey
from app.errors import PaymentRequired
from app.providers.pricing import Cost
from app.state import StateStore

MICRO = 1_000_000
#: Counters outlive their period a little, for late readers; then the store drops them.
_TTL_S = {"day": 3 * 86_400.0, "month": 40 * 86_400.0}


def micro(usd: float) -> int:
    return round(usd * MICRO)


@dataclass(frozen=True)
class Period:
    name: str  # "day" or "month"
    label: str  # "2026-11-30" or "2026-11"
    resets_at: datetime

    @staticmethod
    def current(now: datetime) -> list[Period]:
        day = now.date()
        tomorrow = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        first_next = datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=UTC)
        return [
            Period("day", day.isoformat(), tomorrow),
            Period("month", f"{day.year:04d}-{day.month:02d}", first_next),
        ]


def budget_of(key: CallerKey, period: str) -> float | None:
    return key.budget_daily_usd if period == "day" else key.budget_monthly_usd


@dataclass
class Reservation:
    key: CallerKey
    amount: int
    #: (counter, period name) pairs this reservation added to.
    counters: list[tuple[str, str]] = field(default_factory=list)


class Ledger:
    def __init__(
        self,
        store: StateStore,
        retention_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.retention_s = retention_s
        self.clock = clock

    def _counter(self, key: CallerKey, period: Period) -> str:
        return f"spend:{key.id}:{period.name}:{period.label}"

    async def spent(self, key: CallerKey, period: Period) -> int:
        value = await self.store.get(self._counter(key, period))
        return int(value or 0)

    async def check(self, key: CallerKey, estimate: Cost) -> None:
        """Read-only (dry runs): would this estimate go over a budget?"""
        for period in self._budgeted(key):
            spent = await self.spent(key, period)
            self._refuse_if_over(key, period, spent + micro(estimate.usd), estimate)

    async def reserve(self, key: CallerKey, estimate: Cost) -> Reservation:
        reservation = Reservation(key, micro(estimate.usd))
        for period in Period.current(self.clock()):
            counter = self._counter(key, period)
            total = await self.store.incr(counter, reservation.amount, ttl_s=_TTL_S[period.name])
            reservation.counters.append((counter, period.name))
            try:
                self._refuse_if_over(key, period, total, estimate)
            except PaymentRequired:
                await self.release(reservation)
                raise
        return reservation

    async def release(self, reservation: Reservation) -> None:
        for counter, _ in reservation.counters:
            await self.store.incr(counter, -reservation.amount)
        reservation.counters.clear()

    async def settle(self, reservation: Reservation, actual: Cost) -> None:
        """The reservation becomes the actual cost; the gauges follow."""
        delta = micro(actual.usd) - reservation.amount
        for counter, period in reservation.counters:
            total = await self.store.incr(counter, delta)
            _set_gauges(reservation.key, period, total)
        reservation.counters.clear()

    def _budgeted(self, key: CallerKey) -> list[Period]:
        return [p for p in Period.current(self.clock()) if budget_of(key, p.name) is not None]

    def _refuse_if_over(self, key: CallerKey, period: Period, total: int, estimate: Cost) -> None:
        budget = budget_of(key, period.name)
        if budget is None or total <= micro(budget):
            return
        spent = total - micro(estimate.usd)
        remaining = max(0, micro(budget) - spent) / MICRO
        error = PaymentRequired(
            f"key {key.id!r}: this call's estimated ${estimate.usd:.6f} would exceed its "
            f"{'daily' if period.name == 'day' else 'monthly'} budget of ${budget:g} "
            f"(${remaining:.6f} left until {period.resets_at.isoformat()})",
            reason="budget",
        )
        error.extensions["budget"] = {
            "period": period.name,
            "limit_usd": budget,
            "spent_usd": spent / MICRO,
            "remaining_usd": remaining,
            "estimate_usd": estimate.usd,
            "resets_at": period.resets_at.isoformat(),
        }
        raise error

    # ------------------------------------------------------------------ usage records

    async def record(self, key: CallerKey, fields: dict[str, Any]) -> None:
        await self.store.append(f"usage:{key.id}", fields, retention_s=self.retention_s)

    async def refresh_gauges(self, keys: list[CallerKey]) -> None:
        """Spend of every budgeted key in the current periods (at each scrape, so a new day
        shows zero even before the key's first call of it)."""
        for key in keys:
            for period in self._budgeted(key):
                _set_gauges(key, period.name, await self.spent(key, period))


def _set_gauges(key: CallerKey, period: str, total: int) -> None:
    budget = budget_of(key, period)
    if budget is None:
        return
    metrics.KEY_BUDGET_USD.labels(caller=key.id, period=period).set(budget)
    metrics.KEY_SPEND_USD.labels(caller=key.id, period=period).set(total / MICRO)
