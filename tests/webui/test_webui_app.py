"""`protfit webui` binds loopback by default, shares only when asked, and warns when exposed."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from protfit.cli import build_parser
from protfit.webui import app as webui_app
from protfit.webui.jobs import parse_progress
from protfit.webui.workspace import Workspace


def test_default_launch_is_loopback_without_share_or_browser(tmp_path, monkeypatch) -> None:
    launched: dict = {}
    monkeypatch.setattr("gradio.Blocks.launch", lambda self, **kwargs: launched.update(kwargs))
    args = build_parser().parse_args(["webui", "--workspace", str(tmp_path)])
    args.handler(args)
    assert launched["server_name"] == "127.0.0.1"
    assert launched["share"] is False
    assert launched["inbrowser"] is False
    assert launched["auth"] is None
    assert launched["allowed_paths"] == [str(Workspace(tmp_path).root)]


def test_auth_is_passed_and_malformed_auth_refused(tmp_path) -> None:
    options = webui_app.launch_options(Workspace(tmp_path), auth=webui_app.parse_auth("ana:s3cret:x"))
    assert options["auth"] == ("ana", "s3cret:x")
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        webui_app.parse_auth("ana")


@pytest.mark.parametrize(
    ("host", "share", "auth", "warned"),
    [
        ("127.0.0.1", False, None, False),
        ("localhost", False, None, False),
        ("::1", False, None, False),
        ("0.0.0.0", False, None, True),
        ("192.168.1.5", False, None, True),
        ("127.0.0.1", True, None, True),
        ("0.0.0.0", False, ("ana", "pw"), False),
    ],
)
def test_warning_when_exposed_without_auth(host, share, auth, warned) -> None:
    warning = webui_app.exposure_warning(host, share, auth)
    assert (warning is not None) == warned
    if warned:
        assert "--auth" in warning


def test_progress_line_is_parsed() -> None:
    line = (
        "epoch 3/10 train:  50%|█████     | 2/4 [00:01<00:02,  3.56it/s, loss=1.0641, lr=3.00e-03, step=22]"
    )
    progress = parse_progress(line)
    assert progress is not None
    assert (progress.stage, progress.percent, progress.elapsed, progress.eta) == (
        "epoch 3/10 train",
        50,
        "00:01",
        "00:02",
    )
    assert progress.postfix == {"loss": "1.0641", "lr": "3.00e-03", "step": "22"}
    assert progress.overall_percent == pytest.approx(25.0)
    assert parse_progress("epoch 1/2  train_loss 0.95  val_loss 0.41") is None
