"""`status.prevented` on the Mitigation or Guardrail that denied a change.

A denial must be answered at once, so the review only calls `add` (a dict
update, no I/O) and `run` flushes in the background: per policy, read the
object, merge-patch `status.prevented` to the old count plus the pending
denials with the read `resourceVersion` (a concurrent status write makes a
409, and the next round reads again). Many denials between two flushes cost
one read and one write. A policy deleted meanwhile drops its count.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Final

from keepfix.adapters import kube as kube_mod
from keepfix.api import conventions
from keepfix.core import policy

logger = logging.getLogger(__name__)

#: Seconds between flushes while denials keep coming.
FLUSH_INTERVAL: Final = 1.0

_RESOURCES: Final = {
    conventions.KIND_MITIGATION: kube_mod.keepfix_resource(conventions.PLURAL_MITIGATIONS),
    conventions.KIND_GUARDRAIL: kube_mod.keepfix_resource(conventions.PLURAL_GUARDRAILS),
}


class PreventedCounter:
    """Pending `status.prevented` increments, flushed by `run`."""

    def __init__(self, *, kube: kube_mod.Kube, interval: float = FLUSH_INTERVAL) -> None:
        self._kube = kube
        self._interval = interval
        self._pending: collections.Counter[policy.Ref] = collections.Counter()
        self._wake = asyncio.Event()

    def add(self, ref: policy.Ref) -> None:
        """Count one denial by `ref`; never blocks, never raises for an unknown kind."""
        if ref.kind in _RESOURCES:
            self._pending[ref] += 1
            self._wake.set()

    @property
    def pending(self) -> int:
        """Denials not written yet."""
        return sum(self._pending.values())

    async def run(self) -> None:
        """Flush forever (cancel to stop); errors are logged and retried next round."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self._interval)

    async def flush(self) -> None:
        """Write every pending count once; what fails stays pending."""
        batch, self._pending = self._pending, collections.Counter()
        for ref, count in batch.items():
            try:
                await self._write(ref, count)
            except kube_mod.ApiError as error:
                logger.warning("Prevented count not written: policy=%s error=%s", ref, error)
                self._pending[ref] += count
                self._wake.set()

    async def _write(self, ref: policy.Ref, count: int) -> None:
        resource = _RESOURCES[ref.kind]
        obj = await self._kube.get(resource, namespace=ref.namespace, name=ref.name)
        if obj is None:
            return
        status = obj.get("status") or {}
        current = status.get("prevented") or 0
        await self._kube.patch_status(
            resource,
            namespace=ref.namespace,
            name=ref.name,
            merge_patch={
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": {"prevented": int(current) + count},
            },
        )
