"""The web UI's workspace: every path it reads or writes is resolved here and must stay inside.

Layout (all relative to the workspace root; the UI runs its subprocesses with the root as cwd, so a
run started from the UI is a plain CLI run in ``runs/`` and a CLI run there shows up in the UI)::

    datasets/     dataset folders (train/validation/test files); uploads land in datasets/upload-*
    runs/         run folders (output.dir of every UI run)
    configs/      the YAML of each UI run (what `protfit train` was given) and its log
    predictions/  CSVs written by the Predict tab
    lr-find/      `protfit lr-find` outputs
    sweeps/       `protfit sweep` folders; tunes/: `protfit tune` folders
    comparisons/  `protfit compare` outputs
"""

from __future__ import annotations

import datetime as _dt
import secrets
import shutil
from pathlib import Path

from protfit.data.loading import FORMATS, SPLIT_STEMS

RUNS, DATASETS, CONFIGS, PREDICTIONS = "runs", "datasets", "configs", "predictions"
SWEEPS, LR_FIND, TUNES, COMPARISONS = "sweeps", "lr-find", "tunes", "comparisons"


class WorkspaceError(ValueError):
    """A path that is not inside the workspace (``../``, absolute, or a symlink pointing out)."""


def unique_name(prefix: str) -> str:
    """``prefix-YYYYmmdd-HHMMSS-xxxxxx``: a timestamp for sorting plus a random suffix, so two users
    who press Start in the same second still get two run folders (protfit's atomic mkdir refuses a
    clash anyway; the suffix makes one practically impossible)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


class Workspace:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        for folder in (RUNS, DATASETS, CONFIGS, PREDICTIONS, SWEEPS, LR_FIND, TUNES, COMPARISONS):
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    def resolve(self, relative: str | Path, *, must_exist: bool = False) -> Path:
        """The absolute path of ``relative`` inside the workspace, after resolving every symlink.

        Refuses absolute paths, ``..`` that climbs out, and symlinks whose target is outside, with a
        message that names the path as the user gave it.
        """
        text = str(relative).strip()
        if not text:
            raise WorkspaceError("no path given")
        given = Path(text)
        if given.is_absolute() or text.startswith("~"):
            raise WorkspaceError(f"refused: '{text}' is an absolute path; give a path inside the workspace")
        resolved = (self.root / given).resolve()
        if not resolved.is_relative_to(self.root):
            raise WorkspaceError(f"refused: '{text}' points outside the workspace ({self.root})")
        if must_exist and not resolved.exists():
            raise WorkspaceError(f"'{text}' does not exist in the workspace")
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` (inside the workspace) as the workspace-relative text the UI shows and configs hold."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise WorkspaceError(f"refused: '{path}' points outside the workspace ({self.root})")
        return resolved.relative_to(self.root).as_posix() or "."

    # ---- what the pickers list ------------------------------------------------------------------

    def datasets(self) -> list[str]:
        """Folders under ``datasets/`` (two levels deep) holding a train file."""
        found = []
        for folder in sorted((self.root / DATASETS).glob("**/")):
            if len(folder.relative_to(self.root).parts) > 3 or not _has_train_file(folder):
                continue
            try:
                found.append(self.relative(folder))
            except WorkspaceError:  # a symlinked folder pointing out is not offered
                continue
        return found

    def runs(self, *, finished: bool = False) -> list[str]:
        """Run folders in ``runs/`` (newest first); ``finished``: only those with a best checkpoint."""
        folders = []
        for folder in (self.root / RUNS).iterdir():
            if not (folder / "config.yaml").is_file():
                continue
            if finished and not (folder / "checkpoints" / "best").exists():
                continue
            try:
                folders.append((folder.stat().st_mtime, self.relative(folder)))
            except WorkspaceError:
                continue
        return [name for _, name in sorted(folders, reverse=True)]

    def sweeps(self) -> list[str]:
        """Sweep folders in ``sweeps/`` and tune folders in ``tunes/`` (newest first)."""
        found = []
        for folder in [*(self.root / SWEEPS).iterdir(), *(self.root / TUNES).iterdir()]:
            if folder.is_dir():
                try:
                    found.append((folder.stat().st_mtime, self.relative(folder)))
                except WorkspaceError:
                    continue
        return [name for _, name in sorted(found, reverse=True)]

    def new_folder(self, parent: str, prefix: str) -> Path:
        """A fresh, uniquely named folder under ``parent`` (created atomically: never shared)."""
        while True:
            path = self.resolve(f"{parent}/{unique_name(prefix)}")
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                continue

    def save_uploads(self, files: list[str | Path]) -> str:
        """Copy uploaded split files into a new ``datasets/upload-*`` folder; returns its relative path.

        Only the base name of an upload counts (a crafted ``../x`` name cannot place a file elsewhere)
        and it must be a split file protfit discovers (``train.csv``, ``valid.tsv``, ...).
        """
        allowed = {stem for stems in SPLIT_STEMS.values() for stem in stems}
        checked = []
        for file in files:
            name = Path(file).name
            stem, _, extension = name.lower().rpartition(".")
            if stem not in allowed or extension not in FORMATS:
                # in backticks: the message is shown as Markdown, where train.*, validation.* is emphasis
                raise WorkspaceError(
                    f"refused upload '{name}': name the files `train.*`, `validation.*` (or `valid`/`val`/"
                    f"`dev`) and `test.*`, with extension {', '.join(sorted(FORMATS))}"
                )
            checked.append((Path(file), name))
        folder = self.new_folder(DATASETS, "upload")
        for source, name in checked:
            shutil.copyfile(source, folder / name)
        return self.relative(folder)


def _has_train_file(folder: Path) -> bool:
    return any(
        path.is_file() and path.name.lower().rpartition(".")[::2] in {("train", ext) for ext in FORMATS}
        for path in folder.iterdir()
    )
