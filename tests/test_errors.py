"""One error story for every CLI: a user error is one line and exit status 2; an
internal bug is one line that says so and exit status 1 (the traceback only with -vv);
a stage that fails on I/O names the stage, exit status 1. Every exception class camloc
defines is a user error (CamlocError) or says that a stage failed (PipelineError)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from media import write_clip

from realtime import cli
from realtime.errors import CamlocError, PipelineError, StageError


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    return write_clip(tmp_path_factory.mktemp("errors") / "clip.mp4", photos, 6, fps=10.0)


def _run(capsys, *args: str) -> tuple[int, list[str]]:
    rc = cli.main(list(args))
    return rc, capsys.readouterr().err.strip().splitlines()


def test_a_bug_in_a_stage_is_one_line_saying_so_and_status_1(clip, tiny_onnx, tmp_path,
                                                             monkeypatch, capsys):
    from realtime.model.engine import Localizer

    def broken(self, logits, features, geo):
        return 1 / 0

    monkeypatch.setattr(Localizer, "postprocess", broken)
    args = ("--source", str(clip), "--model", str(tiny_onnx), "--save-json",
            str(tmp_path / "r.jsonl"))
    rc, err = _run(capsys, *args)
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("camloc: error: internal error, a bug in camloc")
    assert "render stage failed: ZeroDivisionError: division by zero" in err[0]
    rc, err = _run(capsys, *args, "-vv")  # the traceback, then the same last line
    assert rc == 1 and "Traceback (most recent call last):" in err
    assert err[-1].startswith("camloc: error: internal error, a bug in camloc")


def test_a_bug_outside_the_pipeline_is_one_line_and_status_1(clip, tiny_onnx, tmp_path,
                                                             monkeypatch, capsys):
    def broken(*_a):
        raise KeyError("provider")

    from realtime.commands import summary

    monkeypatch.setattr(summary, "summary", broken)
    rc, err = _run(capsys, "--source", str(clip), "--model", str(tiny_onnx), "--save-json",
                   str(tmp_path / "r.jsonl"))
    assert rc == 1 and err == ["camloc: error: internal error, a bug in camloc (please report "
                               "it; -vv shows the traceback): KeyError: 'provider'"]


def test_a_full_disk_is_a_failed_stage_not_a_bug(clip, tiny_onnx, tmp_path, monkeypatch,
                                                 capsys):
    from realtime.outputs import sinks
    def full(self, item):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sinks.JsonlSink, "write", full)
    out = tmp_path / "r.jsonl"
    rc, err = _run(capsys, "--source", str(clip), "--model", str(tiny_onnx), "--save-json",
                   str(out))
    # a StageError (realtime.outputs.writes.WriteError): the file, the cause, what it holds
    assert rc == 1 and err == [f"camloc: error: writing {out} failed: No space left on "
                               f"device; kept: {out} 0 whole lines"]


def test_a_user_error_is_one_line_and_status_2(clip, tmp_path, capsys):
    rc, err = _run(capsys, "--source", str(clip), "--model", str(tmp_path / "none.onnx"))
    assert rc == 2 and err == [f"camloc: error: model file not found: {tmp_path / 'none.onnx'}"]


def test_export_cli_user_error_and_bug(tmp_path, monkeypatch, capsys):
    from export import onnx_export
    from export.cli import main

    rc = main(["--labels", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"export: error: cannot read labels file {tmp_path / 'missing.txt'}")

    def broken(*_a, **_k):
        return {}["weights"]

    monkeypatch.setattr(onnx_export, "export_model", broken)
    rc = main(["--output", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == ["export: error: internal error, a bug in camloc (please report "
                               "it; -vv shows the traceback): KeyError: 'weights'"]
    assert list(tmp_path.iterdir()) == []


def _exception_classes() -> list[type]:
    found = []
    for package in ("realtime", "export", "models"):
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            found += [c for _, c in inspect.getmembers(module, inspect.isclass)
                      if issubclass(c, BaseException) and c.__module__ == info.name]
    return found


def test_every_exception_class_is_a_user_error_or_a_failed_stage_and_says_what():
    classes = _exception_classes()
    assert {c.__name__ for c in classes} >= {"CamlocError", "ModelError", "SourceError",
                                             "SinkError", "ExportError", "ZooError",
                                             "StageError", "WriteError"}
    for c in classes:  # user error (exit 2), or failed stage (exit 1)
        assert issubclass(c, (CamlocError, StageError)) or c is PipelineError, c
        assert c.__doc__ and "__doc__" in vars(c) and len(c.__doc__.split()) >= 5, c
