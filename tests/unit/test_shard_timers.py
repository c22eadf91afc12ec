"""ShardCore's own timer loop (in the background, on the real clock): a SAR retry that fails
again is tried again, even when it was the only deadline the loop had."""
from __future__ import annotations

import asyncio
import time

from tests.unit.test_shard_core import ALICE, MemoryStore, Network, core_for, register
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.router import CxUnavailable


class FlakyHss(Network):
    """Answers SARs normally until ``down`` is set, then fails ``failures`` of them."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.down, self.failures = False, failures

    async def sar(self, request):
        if self.down and self.failures:
            self.failures -= 1
            self.sars.append(request)
            raise CxUnavailable("no open Diameter peer")
        return await super().sar(request)


def test_a_retried_sar_that_fails_again_is_retried_until_the_hss_answers():
    network = FlakyHss(failures=2)  # the de-registration and its first retry

    async def scenario():
        core = core_for(ALICE, network, MemoryStore(), time.time, background=True)
        await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        network.down = True
        await core.unregister(ALICE)
        deadline = time.monotonic() + 30  # retries after 1 s, then 2 s
        while len(network.sars) < 4:
            assert time.monotonic() < deadline, [s.assignment_type for s in network.sars]
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert [s.assignment_type for s in network.sars] == [
        SAT.REGISTRATION, *[SAT.ADMINISTRATIVE_DEREGISTRATION] * 3]
