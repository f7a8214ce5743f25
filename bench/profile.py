"""`ivr serve` with pyinstrument watching: the event loop and every webhook's worker thread.

pyinstrument samples one thread per profiler, and sync FastAPI endpoints run on worker
threads, so each endpoint call is profiled on its own thread and the sessions are combined
with the event loop's into one report (HTML, and text to stdout) when the server stops.

    python -m bench.profile --port 8000 --html profile.html   # environment as for ivr serve
"""

from __future__ import annotations

import argparse
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import fastapi.dependencies.utils
import fastapi.routing
import uvicorn
from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer
from pyinstrument.session import Session
from starlette.concurrency import run_in_threadpool

from ivr.db import upgrade
from ivr.observe import log_config
from ivr.settings import load_settings
from ivr.tree import load_tree
from ivr.web import create_app

T = TypeVar("T")
_sessions: list[Session] = []
_lock = threading.Lock()


def _profiled(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        return func(*args, **kwargs)
    finally:
        session = profiler.stop()
        with _lock:
            _sessions.append(session)


async def _in_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(_profiled, func, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--html", type=Path, default=Path("profile.html"))
    args = parser.parse_args()
    fastapi.routing.run_in_threadpool = _in_thread  # type: ignore[attr-defined]
    fastapi.dependencies.utils.run_in_threadpool = _in_thread  # type: ignore[attr-defined]
    settings = load_settings()
    upgrade(settings.database_url, migrations=settings.migrations_dir)
    app = create_app(settings, tree=load_tree(settings.routes, settings.prompts_dir))
    loop_profiler = Profiler(interval=0.0005, async_mode="disabled")
    loop_profiler.start()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_config=log_config("json"))
    finally:
        loop = loop_profiler.stop()
        threads = functools.reduce(Session.combine, _sessions) if _sessions else None
        for name, session in (("event loop", loop), ("worker threads", threads)):
            if session is None:
                continue
            text = ConsoleRenderer(flat=True, show_all=True).render(session)[:6000]
            print(f"===== {name}\n{text}", flush=True)
            html = args.html.with_name(f"{args.html.stem}-{name.replace(' ', '-')}.html")
            html.write_text(HTMLRenderer().render(session))


if __name__ == "__main__":
    main()
