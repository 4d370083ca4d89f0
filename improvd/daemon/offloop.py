"""A slow or blocking call (a model load, a file read or write, the timing thread's stop) run off the asyncio loop
(the MIDI ports are looked at by a thread of their own: ``improvd.daemon.watcher``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

LOAD_TIMEOUT = 30.0  # seconds a model load or configuration reload may take; then it is refused


async def off_loop(function: Callable[..., Any], *args: Any, name: str = "improvd-load") -> Any:
    """``function(*args)`` in a thread of its own named ``name``, within LOAD_TIMEOUT (TimeoutError after it).

    The thread is a daemon thread, not an executor's: a read that blocks for
    ever (a FIFO, a dead network mount, a JACK server that stopped answering)
    can never hold up the exit.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (function(*args), None)
        except Exception as error:
            outcome = (None, error)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for the outcome
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        return await asyncio.wait_for(future, LOAD_TIMEOUT)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{getattr(function, '__name__', 'loading')} took over {LOAD_TIMEOUT:g} s") from None
