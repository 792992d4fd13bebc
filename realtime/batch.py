"""``python -m realtime.batch VIDEOS... --output DIR``: many videos on Ray, the CLI's outputs.

Each video gets what ``python -m realtime --source V --save DIR/V.mp4 --save-json
DIR/V.jsonl`` writes (same frames, same detections), computed on Ray: a local
instance when no ``--address`` (or ``RAY_ADDRESS``) is given, a cluster otherwise.
Videos are cut into segments of ``--segment-frames`` so that one long file also
spreads over the workers; each worker holds one Localizer (one per GPU, or one
per ``--cpus-per-worker`` cores) and writes its segments' parts, which are put
back in order when a video's last segment is done (realtime.pipeline.segments).

A worker that dies is restarted and its segment redone (Ray's ``max_restarts``
and ``max_task_retries``). A video whose outputs are complete (its
``NAME.done.json`` is written last, atomically) is skipped when the job runs
again. A video that cannot be read is reported and the others go on; the exit
status is then 1, naming it. User errors exit with 2.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realtime.commands import parser as cli_args
from realtime.commands.batch_outputs import refuse_overwrites, summary
from realtime.commands.parser import Parser, int_at_least
from realtime.errors import CamlocError, first_line, report_error
from realtime.pipeline.segments import (
    Segment,
    SegmentResult,
    describe_failure,
    done_marker,
    join_parts,
    part_paths,
    plan_segments,
    process_segment,
    read_done,
    warmup_frames,
    write_done,
)

__all__ = ["BatchError", "SegmentWorker", "build_parser", "main"]

log = logging.getLogger("realtime.batch")

PARTS_DIR = ".camloc-parts"
WRITE_TEST = ".camloc-write-test.mp4"  # written once to check the folder and the encoder
_KILL_HOOK = "CAMLOC_TEST_KILL_WORKER"  # tests: a file whose presence makes a worker die once


class BatchError(CamlocError, ValueError):
    """A user error of the batch command (missing Ray, bad output folder, missing video)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (cheap: imports nothing heavy)."""
    p = Parser("python -m realtime.batch", __doc__.split("\n\n")[0])
    a = p.add_argument
    a("videos", nargs="+", metavar="VIDEO", help="video files (visible to every Ray node)")
    a("--output", required=True, metavar="DIR", help="folder for NAME.mp4 and NAME.jsonl")
    a("--address", default=None, metavar="ADDR",
      help="Ray cluster to join (e.g. ray://head:10001 or auto); default: RAY_ADDRESS, "
           "else a local Ray on this machine")
    p.add_model()
    p.add_device()
    p.add_imgsz()
    p.add_tiles()
    p.add_tile_blur()
    p.add_topk()
    p.add_threshold()
    p.add_codec(("h264", "h264_nvenc", "mp4v"))
    p.add_smooth()  # segments warm up on the frames before them (docs/SCALING.md)
    a("--segment-frames", type=int_at_least(1), default=500, metavar="N",
      help="frames per segment (a unit of work)")
    a("--cpus-per-worker", type=int_at_least(1), default=2, metavar="N",
      help="cores per worker without GPUs")
    a("--num-workers", type=int_at_least(1), default=None, metavar="N",
      help="workers (default: one per GPU, else cores / --cpus-per-worker)")
    a("--retries", type=int_at_least(0), default=3, metavar="N",
      help="restarts of a dead worker, and retries of its segment")
    a("--force", action="store_true", help="redo videos whose outputs are complete")
    p.add_logging()
    return p


class SegmentWorker:
    """One Localizer in one Ray worker process, opened once; processes segments.

    ``model`` holds one Ray reference to the .onnx file's bytes (so nodes need no
    shared model cache; nested, so that Ray lends it rather than pinning it to the
    actor's restarts); it is written once per node under the temp folder, by hash.
    """

    def __init__(self, model: list[Any], options: dict[str, Any], cpus: int,
                 codec: str | None = None) -> None:
        import ray

        from realtime.model.engine import Localizer
        from realtime.model.providers import expected_provider, parallelism

        model = ray.get(model[0])
        digest = hashlib.sha256(model).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / "camloc-models" / f"{digest}.onnx"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{digest}.{os.getpid()}.tmp")
            tmp.write_bytes(model)
            os.replace(tmp, path)
        # decided on the provider the session granted (a GPU that fell back: the CPU's share)
        _, guess = parallelism(expected_provider(options["device"]), None, None, cores=cpus)
        self.localizer = Localizer(str(path), threads=guess, **options)
        self.workers, threads = parallelism(self.localizer.provider, None, None, cores=cpus)
        if threads != guess:
            self.localizer = Localizer(str(path), threads=threads, **options)
        self.codec = codec
        self.warmup = warmup_frames(options["smooth"])

    def run(self, seg: Segment, parts_dir: str) -> SegmentResult:
        """Process one segment into its parts; failures come back as ``error``."""
        try:
            return process_segment(self.localizer, seg, parts_dir, warmup=self.warmup,
                                   workers=self.workers, codec=self.codec,
                                   on_frame=_kill_hook)
        except Exception as exc:  # noqa: BLE001 - reported per video by the driver
            log.debug("segment %s failed", seg, exc_info=True)
            return SegmentResult(seg, error=describe_failure(exc))


def _kill_hook(n: int) -> None:
    """Tests: after a segment's second frame, die once if the hook file exists."""
    trigger = os.environ.get(_KILL_HOOK)
    if n == 2 and trigger:
        try:
            os.unlink(trigger)  # only the worker that removes it dies
        except FileNotFoundError:
            return
        os._exit(1)


@dataclass
class _Video:
    """One video of the job: its segments, their results, what became of it."""

    spec: str
    name: str
    segments: list[Segment] = field(default_factory=list)
    results: dict[int, SegmentResult] = field(default_factory=dict)
    expected: int = 0  # frames the file says it has
    fingerprint: dict[str, Any] = field(default_factory=dict)  # for the done-marker
    error: str | None = None
    skipped: bool = False

    @property
    def frames(self) -> int:
        return sum(r.processed for r in self.results.values())


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BatchError("python -m realtime.batch needs Ray: pip install 'ray[default]' "
                         "(or: pip install ray)") from None
    return ray


def _fingerprint(spec: str, options: dict[str, Any], segment_frames: int) -> dict[str, Any]:
    """What the done-marker must match for a video to be skipped."""
    st = os.stat(spec)
    return {"source": os.path.abspath(spec), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "options": options, "segment_frames": segment_frames}


def _plan(args: argparse.Namespace, out: Path, options: dict[str, Any]) -> list[_Video]:
    """Names, skip decisions and segments for every video; unreadable ones marked failed."""
    from realtime.sources import SourceError, VideoFileSource
    from realtime.sources.names import unique_names

    for spec in args.videos:
        if not os.path.isfile(spec):
            raise BatchError(f"video not found: {spec}")
    videos = [_Video(spec, name) for spec, name in zip(args.videos,
                                                       unique_names(args.videos))]
    for v in videos:
        v.fingerprint = _fingerprint(v.spec, options, args.segment_frames)
        done = read_done(done_marker(out, v.name))
        if not args.force and done is not None and done.get("fingerprint") == v.fingerprint \
                and (out / done["video"]).is_file() and (out / done["jsonl"]).is_file():
            v.skipped = True
            continue
        try:
            with VideoFileSource(v.spec) as src:
                frames, v.expected = src.frames_in_file, src.total or 0
        except SourceError as exc:
            v.error = first_line(exc)
            continue
        v.segments = plan_segments(v.spec, v.name, frames, args.segment_frames)
    return videos


def _connect(ray: Any, address: str | None, verbose: int) -> bool:
    """Join ``address`` / RAY_ADDRESS, or start a local Ray; True when we started it."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    log.info("ray: %s", f"joining {address}" if address else "starting a local instance")
    local = {} if address else {"include_dashboard": False, "_node_ip_address": "127.0.0.1"}
    ray.init(address=address, log_to_driver=verbose > 0, logging_level=logging.WARNING, **local)
    return True


def _worker_count(ray: Any, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """(workers, Ray resources of each): one per GPU, else cores / --cpus-per-worker."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    if gpus and args.device != "cpu":
        return args.num_workers or gpus, {"num_gpus": 1, "num_cpus": 1}
    per = min(args.cpus_per_worker, max(1, cpus))
    return args.num_workers or max(1, cpus // per), {"num_cpus": per}


def _runtime_env() -> dict[str, Any]:
    """Workers find this package (local Ray) and get the driver's CAMLOC_* variables."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if k.startswith("CAMLOC_")}
    return {"env_vars": {"PYTHONPATH": path, **env}}


def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="frame", dynamic_ncols=True, disable=None, leave=False)


def _finish_video(v: _Video, out: Path, parts: Path) -> None:
    """Join the parts of a video whose segments are all done, write its marker."""
    failed = [r for r in v.results.values() if r.error]
    if failed:
        v.error = failed[0].error
    else:
        try:
            join_parts([part_paths(parts, s) for s in v.segments], out / f"{v.name}.mp4",
                       out / f"{v.name}.jsonl")
            write_done(done_marker(out, v.name), {
                "fingerprint": v.fingerprint, "video": f"{v.name}.mp4",
                "jsonl": f"{v.name}.jsonl", "frames": v.frames,
                "corrupt": sum(r.corrupt for r in v.results.values())})
        except (OSError, CamlocError) as exc:
            v.error = f"joining its segments failed: {describe_failure(exc)}"
    shutil.rmtree(parts / v.name, ignore_errors=True)


def _schedule(ray: Any, args: argparse.Namespace, videos: list[_Video], out: Path,
              model: bytes, options: dict[str, Any]) -> tuple[int, float]:
    """Run every segment on the workers; join each video as its last segment is done.
    Returns (workers, seconds)."""
    parts = out / PARTS_DIR
    todo = [s for v in videos for s in v.segments]
    by_name = {v.name: v for v in videos}
    n, resources = _worker_count(ray, args)
    n = max(1, min(n, len(todo)))
    remote = ray.remote(SegmentWorker).options(
        max_restarts=args.retries, max_task_retries=args.retries, runtime_env=_runtime_env(),
        **resources)
    cpus = int(resources["num_cpus"]) if "num_gpus" not in resources else 1
    model_ref = ray.put(model)
    workers = [remote.remote([model_ref], options, cpus, args.codec) for _ in range(n)]
    log.info("ray: %d worker(s) (%s each) for %d segment(s)", n, resources, len(todo))
    bar = _progress(sum(v.expected for v in videos if v.segments))
    t0 = time.monotonic()
    running: dict[Any, tuple[Any, Segment]] = {}
    queue = list(reversed(todo))
    idle = list(workers)
    try:
        while queue or running:
            while queue and idle:
                seg, w = queue.pop(), idle.pop()
                running[w.run.remote(seg, str(parts))] = (w, seg)
            ready, _ = ray.wait(list(running), num_returns=1)
            w, seg = running.pop(ready[0])
            idle.append(w)
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker died more than --retries
                result = SegmentResult(seg, error=f"worker lost: {first_line(exc)}")
            v = by_name[seg.name]
            v.results[seg.index] = result
            if bar is not None:
                bar.update(result.processed)
            if len(v.results) == len(v.segments):
                _finish_video(v, out, parts)
    finally:
        if bar is not None:
            bar.close()
        for w in workers:
            with contextlib.suppress(Exception):
                ray.kill(w)
    with contextlib.suppress(OSError):
        parts.rmdir()
    return n, time.monotonic() - t0


def _run(args: argparse.Namespace) -> int:
    from realtime.model.engine import Localizer
    from realtime.model.zoo import resolve_model
    from realtime.outputs.recorder import open_video_sink, pyav_available

    out = Path(args.output)
    refuse_overwrites(args.videos, args.model, out, WRITE_TEST, PARTS_DIR)  # before any write
    # writable, and the codec's encoder there: one line now, exit 2
    open_video_sink(out / WRITE_TEST, 25.0, args.codec, "--output").close()
    options = {"device": args.device, "imgsz": args.imgsz, "topk": args.topk,
               "threshold": args.threshold, "smooth": args.smooth,
               **({"tiles": args.tiles, "tile_blur": args.tile_blur} if args.tiles > 1
                  else {})}  # older runs' fingerprints hold
    model_path = resolve_model(args.model)
    Localizer(str(model_path), threads=1, **options)  # bad model or option: fail here, once
    model = model_path.read_bytes()
    videos = _plan(args, out, {**options, "codec": args.codec,
                               "model_sha256": hashlib.sha256(model).hexdigest()})
    for v in videos:
        if v.error:
            log.error("%s: %s", v.spec, v.error)
    workers, seconds = 0, 0.0
    if any(v.segments for v in videos):
        if any(len(v.segments) > 1 for v in videos) and not pyav_available():
            raise BatchError("joining segments needs PyAV: pip install av (or a "
                             "--segment-frames longer than the videos)")
        ray = _import_ray()
        started = _connect(ray, args.address, args.verbose)
        try:
            workers, seconds = _schedule(ray, args, videos, out, model, options)
        finally:
            if started:
                ray.shutdown()
    print("\n".join(summary(videos, workers, seconds, out)), flush=True)
    failed = [v for v in videos if v.error is not None]
    for v in failed:
        print(f"camloc: error: {v.spec}: {v.error}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; 0 when every video's outputs are complete, 1 when one failed (or a
    bug), 2 for a user error; see :mod:`realtime.errors`."""
    saved = cli_args.logging_state()
    verbose = 0
    try:
        args = build_parser().parse_args(argv)
        verbose = args.verbose
        cli_args.setup_logging(verbose)
        return _run(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("camloc: interrupted (complete videos are kept; run again to finish)",
              file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user error 2, failed stage or bug 1; one line
        return report_error("camloc", exc, verbose)
    finally:
        cli_args.restore_logging(saved)


if __name__ == "__main__":
    sys.exit(main())
