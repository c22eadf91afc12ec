"""The loop `scscf serve` and `scscf hss` run on."""
import asyncio

import pytest
import uvloop

from scripts import event_loop


async def _loop_type():
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


@pytest.mark.parametrize("use_uvloop, expected", [(True, uvloop.Loop),
                                                  (False, asyncio.SelectorEventLoop)])
def test_run_answers_the_coroutine_on_the_loop_asked_for(use_uvloop, expected):
    assert event_loop.run(_loop_type(), use_uvloop) is expected
