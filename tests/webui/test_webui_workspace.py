"""Every path the web UI reads or writes stays inside the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from protfit.webui.workspace import Workspace, WorkspaceError, unique_name


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


def test_paths_inside_are_resolved(workspace: Workspace) -> None:
    (workspace.root / "datasets" / "gb1").mkdir()
    assert workspace.resolve("datasets/gb1") == workspace.root / "datasets" / "gb1"
    assert workspace.resolve("datasets/../datasets/gb1") == workspace.root / "datasets" / "gb1"
    assert workspace.relative(workspace.root / "runs") == "runs"


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("../outside", "points outside the workspace"),
        ("datasets/../../outside", "points outside the workspace"),
        ("/etc/passwd", "is an absolute path"),
        ("~/secrets", "is an absolute path"),
        ("", "no path given"),
    ],
)
def test_crafted_paths_are_refused(workspace: Workspace, given: str, reason: str) -> None:
    with pytest.raises(WorkspaceError, match=reason):
        workspace.resolve(given)


def test_symlink_pointing_out_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "train.csv").write_text("aa_seq,label\nMKT,1\n")
    (workspace.root / "datasets" / "link").symlink_to(outside, target_is_directory=True)
    (workspace.root / "datasets" / "file-link.csv").symlink_to(outside / "train.csv")
    for given in ("datasets/link", "datasets/link/train.csv", "datasets/file-link.csv"):
        with pytest.raises(WorkspaceError, match="points outside the workspace"):
            workspace.resolve(given)
    assert workspace.datasets() == []  # a symlinked folder pointing out is not even offered


def test_symlink_inside_is_allowed(workspace: Workspace) -> None:
    (workspace.root / "datasets" / "real").mkdir()
    (workspace.root / "datasets" / "alias").symlink_to(workspace.root / "datasets" / "real")
    assert workspace.resolve("datasets/alias") == workspace.root / "datasets" / "real"


def test_uploads_keep_only_the_base_name_of_split_files(workspace: Workspace, tmp_path: Path) -> None:
    upload = tmp_path / "uploaded"
    upload.mkdir()
    for name in ("train.csv", "valid.csv"):
        (upload / name).write_text("aa_seq,label\nMKT,1\n")
    folder = workspace.save_uploads([upload / "train.csv", upload / "valid.csv"])
    assert folder.startswith("datasets/upload-")
    assert sorted(path.name for path in workspace.resolve(folder).iterdir()) == ["train.csv", "valid.csv"]
    assert folder in workspace.datasets()
    (upload / "notes.txt").write_text("x")
    with pytest.raises(WorkspaceError, match="refused upload 'notes.txt'"):
        workspace.save_uploads([upload / "notes.txt"])


def test_two_starts_get_two_run_folders(workspace: Workspace) -> None:
    names = {unique_name("webui") for _ in range(200)}
    assert len(names) == 200
    first, second = workspace.new_folder("runs", "webui"), workspace.new_folder("runs", "webui")
    assert first != second and first.is_dir() and second.is_dir()


def test_runs_lists_cli_and_ui_runs(workspace: Workspace) -> None:
    for name in ("cli-run", "webui-run"):
        (workspace.root / "runs" / name).mkdir()
        (workspace.root / "runs" / name / "config.yaml").write_text("{}")
    (workspace.root / "runs" / "cli-run" / "checkpoints" / "best").mkdir(parents=True)
    assert sorted(workspace.runs()) == ["runs/cli-run", "runs/webui-run"]
    assert workspace.runs(finished=True) == ["runs/cli-run"]


def test_gradio_writes_its_hash_seed_into_the_cache_not_into_its_package(tmp_path: Path) -> None:
    import importlib.util
    import os
    import subprocess
    import sys

    pytest.importorskip("gradio")
    package = Path(importlib.util.find_spec("gradio").origin).parent
    before = sorted((path.name, path.stat().st_mtime_ns) for path in package.iterdir())
    program = (
        "import protfit.webui.app, gradio.utils, gradio.processing_utils as p; "
        "print(gradio.utils.HASH_SEED_PATH); print(p.hash_seed.decode())"
    )
    env = {**os.environ, "PROTFIT_CACHE": str(tmp_path / "cache")}
    lines = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    seed_file = tmp_path / "cache" / "gradio" / "hash_seed.txt"
    assert lines[-2] == str(seed_file) and seed_file.read_text() == lines[-1]
    assert sorted((path.name, path.stat().st_mtime_ns) for path in package.iterdir()) == before
