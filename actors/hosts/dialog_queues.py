"""NOTIFY delivery of one shard: one ordered queue per reg-event subscription dialog.

A dialog's next NOTIFY leaves only once the previous one has its final answer, so the watcher
gets CSeqs (and reginfo versions) in the order the IMPU built them, whatever the transports
and the network do meanwhile; different dialogs never wait for each other. A SUBSCRIBE's own
NOTIFY (``after_reply``) is held, with whatever queues behind it, until the shard releases its
dialog once the SUBSCRIBE's 200 OK is on its way.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from actors.reg_event.procedures import OutgoingNotify
from actors.reg_event.subscription import Subscription, on_notify_failure
from actors.vocabulary import NotifyJob

log = logging.getLogger(__name__)

Dialog = tuple[str, str]  # (presentity, subscription key)
TIMED_OUT = 408  # what a NOTIFY that found no transport counts as (RFC 3261 8.1.3.1)


def dialog_of(sub: Subscription) -> Dialog:
    return sub.presentity, sub.key


@dataclass(slots=True)
class _Queued:
    notify: OutgoingNotify
    released: asyncio.Event


class DialogQueues:
    def __init__(self, send: Callable[[str, NotifyJob], Awaitable[int]],
                 failed: Callable[[Subscription], Awaitable[None]]) -> None:
        self._send = send  # (transport actor, job) -> final status
        self._failed = failed  # the subscription of a NOTIFY that failed for good
        self._queues: dict[Dialog, deque[_Queued]] = {}
        self._workers: set[asyncio.Task] = set()

    def __len__(self) -> int:
        """NOTIFYs waiting or in flight."""
        return sum(len(queue) for queue in self._queues.values())

    def post(self, notifies: list[OutgoingNotify]) -> None:
        """Queues NOTIFYs behind those of their dialogs, in the order given."""
        for notify in notifies:
            entry = _Queued(notify, asyncio.Event())
            if not notify.after_reply:
                entry.released.set()
            dialog = dialog_of(notify.sub)
            queue = self._queues.get(dialog)
            if queue is None:
                queue = self._queues[dialog] = deque()
                worker = asyncio.get_running_loop().create_task(self._drain(dialog, queue))
                self._workers.add(worker)
                worker.add_done_callback(self._workers.discard)
            queue.append(entry)

    def release(self, dialogs: Iterable[Dialog]) -> None:
        """Lets the held NOTIFYs of these dialogs go (their SUBSCRIBEs have been answered)."""
        for dialog in dialogs:
            for entry in self._queues.get(dialog, ()):
                entry.released.set()

    async def idle(self) -> None:
        """Returns once every queued NOTIFY has its answer."""
        while self._workers:
            await asyncio.wait(set(self._workers))

    async def _drain(self, dialog: Dialog, queue: deque[_Queued]) -> None:
        try:
            while queue:
                entry = queue[0]
                await entry.released.wait()
                sub = entry.notify.sub
                try:
                    status = await self._send(sub.transport, entry.notify.job)
                except Exception as exc:  # the transport is gone: as good as a timeout
                    log.warning("NOTIFY to %s not sent: %s", sub.watcher, exc)
                    status = TIMED_OUT
                queue.popleft()
                if on_notify_failure(status):
                    # The subscription is over: what was built behind this NOTIFY goes nowhere.
                    kept = [e for e in queue if e.notify.sub is not sub]
                    queue.clear()
                    queue.extend(kept)
                    try:
                        await self._failed(sub)
                    except Exception:
                        log.exception("ending the subscription of %s failed", sub.watcher)
        finally:
            del self._queues[dialog]  # nothing awaited since the queue was last seen empty
