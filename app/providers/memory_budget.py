"""A memory budget for work that decodes pixels on this machine (the ``local`` provider's
models). Each job is admitted by its *estimated peak* (pixels x bytes per pixel x copies)
against a configured budget, so two large upscales cannot together exceed what the
container was sized for:

- a job whose estimate alone is over the budget is refused (422, the limit named), before
  any pixel is decoded;
- a job that fits the budget but not what is free now waits, in arrival order, at most the
  queue timeout, then gets 503 with Retry-After.

Any local model uses it the same way: ``check(estimate)`` while preparing, then
``async with budget.reserve(estimate, wait_s): ...`` around the work.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import FieldError, ProviderUnavailable, ValidationFailed

MIB = 1024 * 1024
#: Pillow keeps RGB as 4 bytes per pixel (RGBX), like RGBA, CMYK and 32-bit modes.
BYTES_PER_PIXEL = 4


def lanczos_peak(in_w: int, in_h: int, out_w: int, out_h: int, max_answer: int) -> int:
    """Estimated peak bytes of one decode -> convert -> Lanczos resize -> encode.

    Copies alive at the worst moment (an estimate, not yet checked against measured peaks): the
    decoded source and its converted/oriented copy, the resize's one-axis intermediate,
    the result, and the encoded answer (at most ``max_answer``) with its base64 for JSON.
    """
    source = in_w * in_h
    intermediate = max(out_w * in_h, in_w * out_h)
    result = out_w * out_h
    pixels = 2 * source + intermediate + result
    encoded = min(result * BYTES_PER_PIXEL, max_answer)
    return pixels * BYTES_PER_PIXEL + encoded + encoded * 4 // 3


class MemoryBudget:
    def __init__(self, provider: str, budget_bytes: int) -> None:
        self.provider = provider
        self.total = budget_bytes
        self.free = budget_bytes
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def check(self, estimate: int, loc: tuple[str | int, ...] = ("scale",)) -> FieldError | None:
        """A refusal when ``estimate`` can never fit, naming the budget."""
        if estimate <= self.total:
            return None
        return FieldError(
            loc,
            f"the job needs about {_mib(estimate)} MiB of memory",
            f"{self.provider}: estimated peak memory must be <= {_mib(self.total)} MiB "
            "(the memory budget)",
        )

    @asynccontextmanager
    async def reserve(self, estimate: int, wait_s: float) -> AsyncIterator[None]:
        error = self.check(estimate)
        if error is not None:
            raise ValidationFailed(error.msg, errors=[error], provider=self.provider)
        await self._acquire(estimate, wait_s)
        try:
            yield
        finally:
            self.free += estimate
            self._wake()

    async def _acquire(self, estimate: int, wait_s: float) -> None:
        if not self._waiters and estimate <= self.free:
            self.free -= estimate
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (estimate, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=wait_s)
        except TimeoutError:
            if future.done():  # admitted just as the wait ran out: keep the admission
                return
            self._waiters.remove(entry)
            future.cancel()
            self._wake()
            raise self._busy() from None
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.free += estimate
            elif entry in self._waiters:
                self._waiters.remove(entry)
            self._wake()
            raise

    def _wake(self) -> None:
        """Admit waiters in arrival order while the first of them fits."""
        while self._waiters and self._waiters[0][0] <= self.free:
            estimate, future = self._waiters.popleft()
            if future.done():
                continue
            self.free -= estimate
            future.set_result(None)

    def _busy(self) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"the {self.provider} provider's memory budget ({_mib(self.total)} MiB) is in use; "
            "try again shortly",
            provider=self.provider,
            retry_after=1,
            reason="saturated",
        )


def _mib(size: int) -> int:
    return -(-size // MIB)
