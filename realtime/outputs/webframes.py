"""The web view's video routes (``/stream``, ``/frame``): the newest frame's JPEG, encoded
once per frame on demand and shared by every viewer; a viewer that reads slowly only waits
on its own socket and skips to the newest frame. Mixed into
:class:`realtime.outputs.web.WebView`, whose state (the newest item, the tiles, the event
that wakes viewers, the encoder) these methods read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import cv2
from aiohttp import web

__all__ = ["FrameRoutes"]

log = logging.getLogger(__name__)

_BOUNDARY = "camloc-frame"
_WAKE_S = 0.5        # stream handlers look up at least this often (to notice shutdown)
_STALL_S = 30.0      # a viewer whose socket takes no data for this long is dropped


def _jpeg(image: Any, quality: int, tiles: Any = None) -> bytes:
    """``image`` (or, with ``tiles``, their mosaic composed now) as JPEG bytes."""
    if tiles is not None:
        image = tiles.mosaic()
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _wall_ms(arrival: float) -> str:
    """A ``time.monotonic()`` stamp as wall-clock milliseconds since the epoch (what a
    browser's ``Date.now()`` compares with)."""
    return f"{(time.time() - time.monotonic() + arrival) * 1e3:.1f}"



class FrameRoutes:
    """``/stream`` and ``/frame`` (see the module docstring)."""

    _new_frame: Any
    _encode_lock: Any

    async def _next_jpeg(self, last: int) -> tuple[int, bytes, float] | None:
        """The newest frame's JPEG once it is newer than ``last``, with its arrival stamp
        (a mosaic: its newest frame's); None when closing."""
        while True:
            event = self._new_frame  # taken before the check: a wake-up in between counts
            seq, ready = self._newest()
            if seq != last and ready:
                break
            if self._closing:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), _WAKE_S)  # type: ignore[union-attr]
        async with self._encode_lock:  # type: ignore[union-attr]
            with self._lock:
                seq, item = self._seq, self._latest
            tiles = self.tiles
            if tiles is not None:
                seq = tiles.seq
            if self._jpeg_cache[0] != seq:  # one encoding per frame, shared by every viewer
                # a mosaic's stamp: its newest frame's arrival (taken before composing it)
                arrival = item.frame.arrival if tiles is None else tiles.newest_arrival()
                data = await asyncio.get_running_loop().run_in_executor(
                    self._encoder, _jpeg, item.image if tiles is None else None, self.quality,
                    tiles)
                self._jpeg_cache = (seq, data, arrival)
                self.encoded += 1
            return self._jpeg_cache

    def _newest(self) -> tuple[int, bool]:
        """(sequence number of the newest frame, whether it has an image to show)."""
        if self.tiles is not None:
            return self.tiles.seq, self.tiles.seq > 0
        latest = self._latest
        return self._seq, latest is not None and latest.image is not None

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}",
            "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        self.viewers += 1
        last = 0
        try:
            # each part ends with the next boundary, not only when the next frame comes: a
            # browser shows a part once it sees the boundary after it, so the newest frame
            # (the last one, when the run has ended) appears at once
            await asyncio.wait_for(resp.write(f"--{_BOUNDARY}\r\n".encode()), _STALL_S)
            while (got := await self._next_jpeg(last)) is not None:
                last, data, arrival = got
                # the frame's arrival travels with it, in wall-clock ms: a page on the same
                # machine (or with a synced clock) sees how long after it the frame shows
                wall = f"X-Camloc-Arrival: {_wall_ms(arrival)}\r\n" if arrival else ""
                part = (f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n{wall}"
                        "\r\n").encode() + data + f"\r\n--{_BOUNDARY}\r\n".encode()
                await asyncio.wait_for(resp.write(part), _STALL_S)
                if arrival:
                    self.latency.since(arrival)
        except (ConnectionError, TimeoutError):  # the viewer left or stalled: drop it quietly
            log.debug("viewer %s dropped", request.remote)
        finally:
            self.viewers -= 1
        return resp

    async def _frame(self, request: web.Request) -> web.StreamResponse:
        """The newest frame's JPEG once newer than ``?after=`` (204 after 10 s without one,
        or when closing): a viewer asks for the next frame only once it has this one."""
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="after must be a frame number\n") from None
        self.viewers += 1  # a viewer waiting: frames wake it
        try:
            got = await asyncio.wait_for(self._next_jpeg(after), 10.0)
        except TimeoutError:
            got = None
        finally:
            self.viewers -= 1
        if got is None:
            return web.Response(status=204, headers={"Cache-Control": "no-store"})
        seq, data, arrival = got
        headers = {"Cache-Control": "no-store", "X-Camloc-Seq": str(seq)}
        if arrival:
            headers["X-Camloc-Arrival"] = _wall_ms(arrival)
        resp = web.Response(body=data, content_type="image/jpeg", headers=headers)
        await resp.prepare(request)
        await resp.write_eof()
        if arrival:
            self.latency.since(arrival)
        return resp
