"""The thumbnail handlers, run in-process by ``tq.testing`` as an executor would run them: no server, no AWS."""

from __future__ import annotations

import base64
import threading

import pytest
import thumbnails.handlers  # noqa: F401 - registers the task types

from tq import registry
from tq.testing import run

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00").decode()


def test_resize_returns_the_thumbnail_s_key_and_logs_what_it_did() -> None:
    outcome = run("thumbnails.resize", {"url": "s3://photos/cat.png", "width": 128, "height": 96})
    assert outcome.ok
    assert outcome.result["width"] == 128
    assert outcome.result["key"].endswith("-128x96")
    assert outcome.log == ["resizing s3://photos/cat.png to 128x96"]


def test_a_payload_that_does_not_fit_the_model_fails_for_good() -> None:
    # The gateway refuses it at submit (422); an executor given one anyway does not retry it
    outcome = run("thumbnails.resize", {"url": "ftp://x", "width": 0, "height": 96})
    assert outcome.permanent
    assert "width" in str(outcome.error)


def test_the_types_declare_their_defaults_and_payload_schema() -> None:
    spec = registry.get("thumbnails.resize")
    assert spec is not None
    assert spec.defaults() == {"retry": {"max_retries": 3}, "timeout_s": 60}
    schema = spec.payload_schema()
    assert schema is not None
    assert schema["required"] == ["url", "width", "height"]


def test_check_tells_an_image_s_format() -> None:
    assert run("thumbnails.check", {"head": PNG}).result == {"format": "png"}


@pytest.mark.parametrize("payload", [{"head": base64.b64encode(b"%PDF-1.7").decode()}, {"head": "***"}, {}])
def test_check_fails_for_good_on_what_no_retry_can_fix(payload: dict[str, str]) -> None:
    outcome = run("thumbnails.check", payload)
    assert outcome.permanent, outcome.error


def test_the_class_handler_is_set_up_once_for_many_tasks() -> None:
    first = run("thumbnails.watermark", {"url": "s3://photos/a.png"})
    second = run("thumbnails.watermark", {"url": "s3://photos/b.png"})
    assert (first.result["setups"], second.result["setups"]) == (1, 1)
    assert first.result["mark"] != second.result["mark"]


def test_the_async_handler_probes_every_url() -> None:
    urls = ["https://cdn.example/a.jpg", "https://cdn.example/b.jpg"]
    outcome = run("thumbnails.probe", {"urls": urls})
    assert outcome.ok
    assert sorted(outcome.result) == urls


def test_album_reports_progress_after_each_image() -> None:
    outcome = run("thumbnails.album", {"images": ["a", "b", "c", "d"]})
    assert outcome.result == {"done": 4, "of": 4}
    assert [p.fraction for p in outcome.progress] == [0.25, 0.5, 0.75, 1.0]
    assert outcome.progress[-1].message == "4/4 images"


def test_album_stops_when_told_to() -> None:
    stop = threading.Event()
    stop.set()  # cancelled before the first image
    outcome = run("thumbnails.album", {"images": ["a", "b"], "delay_s": 5}, stop=stop)
    assert outcome.result == {"done": 0, "of": 2}
    assert outcome.progress == []
