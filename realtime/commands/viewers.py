"""What people watch a run with: the ``--show`` window and the ``--serve`` web view, for
one source (the annotated frames) or several (a mosaic of tiles, one per source)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from realtime.outputs.serve import ServeError, parse_serve

__all__ = ["open_viewers", "open_web_view"]


def open_web_view(spec: str, token: str | None, options: Any, topk: int,
                  tiles: Any = None) -> Any:
    """A started :class:`realtime.outputs.web.WebView` for ``--serve spec`` (with ``tiles``: the
    mosaic of several sources); ServeError (one line) for a bad address, a port in use
    or missing packages."""
    try:
        host, port = parse_serve(spec)
    except argparse.ArgumentTypeError as exc:
        raise ServeError(f"--serve: {exc}") from None
    try:
        from realtime.outputs.web import WebView
    except ImportError as exc:
        raise ServeError(f"--serve needs {exc.name or 'aiohttp'}: pip install aiohttp "
                         "prometheus-client") from None
    return WebView(host, port, token, options=options, topk=topk, tiles=tiles).start()


def open_viewers(args: argparse.Namespace, stack: contextlib.ExitStack, options: Any,
                 window: Any, names: list[str]) -> tuple[list[Any], Any]:
    """The sinks every source feeds (window, web view; with several sources both show a
    mosaic of tiles), and the web view (None without --serve)."""
    shared: list[Any] = []
    holder = None
    if len(names) > 1 and (window is not None or args.serve):
        from realtime.outputs.tiles import TileHolder, TileSink

        holder = TileHolder(names)
        shared.append(TileSink(holder))
    web = None
    if args.serve:
        web = stack.enter_context(open_web_view(args.serve, args.token, options, args.topk,
                                                tiles=holder))
        print(f"camloc: serving the live view on {', '.join(web.urls)}", flush=True)
        if holder is None:
            shared.append(web)
    if window is not None:
        if holder is None:
            from realtime.outputs.sinks import WindowSink

            shared.append(stack.enter_context(WindowSink(window)))
        else:
            from realtime.outputs.tiles import MosaicWindow

            shared.append(stack.enter_context(MosaicWindow(window, holder, args.topk)))
    return shared, web
