"""The event loops the registrar runs on, for tests that must hold on each: uvloop's by
default ([ray] uvloop), asyncio's otherwise."""
import asyncio
import gc

import uvloop

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run_on(loop_factory, coro):
    """Runs ``coro`` on a loop from ``loop_factory``; an error the loop reports (a task failing
    unseen by any caller) fails the test."""
    errors = []
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.get_loop().set_exception_handler(lambda loop, context: errors.append(context))
        result = runner.run(coro)
        gc.collect()
    assert not errors, errors
    return result
