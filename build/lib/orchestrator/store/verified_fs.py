"""The filesystem Ray Tune gets: storage as it is, except that Ray can read no pickle from it
that the driver has not verified.

Ray keeps its experiment state (`tuner.pkl`, `experiment_state-*.json` with pickled fields,
`searcher-state-*.pkl`, ...) at the top of the experiment folder, and an errored trial's
exception as `error.pkl` in its folder, and unpickles them when a sweep is restored or its
results are read. Storage is writable by every pod, so those files are not trusted: reads of
them are served only from bytes the driver verified (`orchestrator.run.ledger`), in memory, so
nothing can be swapped between the check and the read (`vouch`). Any other pickle under the experiment
folder reads as missing. Everything else (checkpoints, result.json, listing, writes) passes
through to the real filesystem.
"""

from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.fs as pafs

# Top-level files Ray itself needs to see on storage, and never unpickles.
PLAIN_TOP_LEVEL = (".validate_storage_marker",)

# Experiment folder -> top-level file name -> bytes this driver vouches for. Process-wide, because
# Ray copies its filesystem object; workers, in other processes, vouch for nothing (they read no state).
_VOUCHED: dict[str, dict[str, bytes]] = {}


def vouch(root: str, files: dict[str, bytes]) -> None:
    """Let Ray read these files at the top of experiment folder `root` (the driver verified or wrote them)."""
    _VOUCHED.setdefault(root.rstrip("/"), {}).update(files)


def forget(root: str) -> None:
    _VOUCHED.pop(root.rstrip("/"), None)


class VerifiedStateHandler(pafs.FileSystemHandler):
    def __init__(self, inner: pafs.FileSystem, root: str):
        self.inner = inner
        self.root = root.rstrip("/")

    def __reduce__(self):
        return (VerifiedStateHandler, (self.inner, self.root))

    @property
    def verified(self) -> dict[str, bytes]:
        return _VOUCHED.get(self.root, {})

    def _top_level_name(self, path: str) -> str | None:
        parent, name = posixpath.split(path.rstrip("/"))
        return name if parent == self.root else None

    def _guarded(self, path: str) -> bool:
        """Whether reads of `path` must come from the verified bytes."""
        name = self._top_level_name(path)
        if name is not None:
            return name not in PLAIN_TOP_LEVEL and not name.endswith(".signed")
        return path.startswith(self.root + "/") and path.endswith(".pkl")

    def _served(self, path: str) -> bytes:
        data = self.verified.get(self._top_level_name(path) or "")
        if data is None:
            raise FileNotFoundError(f"{path}: not read from storage (only state the driver verified is)")
        return data

    # -- reads -----------------------------------------------------------------------------
    def open_input_stream(self, path):
        return pa.BufferReader(self._served(path)) if self._guarded(path) else self.inner.open_input_stream(path)

    def open_input_file(self, path):
        return pa.BufferReader(self._served(path)) if self._guarded(path) else self.inner.open_input_file(path)

    def _info(self, info: pafs.FileInfo) -> pafs.FileInfo | None:
        if info.type == pafs.FileType.Directory or not self._guarded(info.path):
            return info
        data = self.verified.get(self._top_level_name(info.path) or "")
        return None if data is None else pafs.FileInfo(info.path, pafs.FileType.File, size=len(data))

    def get_file_info(self, paths):
        infos = []
        for info in self.inner.get_file_info(paths):
            shown = self._info(info) if info.type != pafs.FileType.NotFound else info
            if info.type == pafs.FileType.NotFound and self._guarded(info.path):
                shown = self._info(pafs.FileInfo(info.path, pafs.FileType.File))
            infos.append(shown or pafs.FileInfo(info.path, pafs.FileType.NotFound))
        return infos

    def get_file_info_selector(self, selector):
        listed = [shown for info in self.inner.get_file_info(selector) if (shown := self._info(info)) is not None]
        if selector.base_dir.rstrip("/") == self.root:
            present = {info.path for info in listed}
            listed += [
                pafs.FileInfo(path, pafs.FileType.File, size=len(data))
                for name, data in self.verified.items()
                if (path := f"{self.root}/{name}") not in present
            ]
        return listed

    def copy_file(self, src, dest):
        if not self._guarded(src):
            return self.inner.copy_file(src, dest)
        with self.inner.open_output_stream(dest) as stream:
            stream.write(self._served(src))

    # -- everything else goes straight through --------------------------------------------
    def get_type_name(self):
        return f"verified+{self.inner.type_name}"

    def normalize_path(self, path):
        return self.inner.normalize_path(path)

    def create_dir(self, path, recursive):
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        self.inner.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        self.inner.delete_file(path)

    def move(self, src, dest):
        self.inner.move(src, dest)

    def open_output_stream(self, path, metadata):
        return self.inner.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.inner.open_append_stream(path, metadata=metadata)

    def equals(self, other):
        return isinstance(other, VerifiedStateHandler) and (self.inner, self.root) == (other.inner, other.root)


def verified_filesystem(inner: pafs.FileSystem, root: str) -> pafs.FileSystem:
    return pafs.PyFileSystem(VerifiedStateHandler(inner, root))
