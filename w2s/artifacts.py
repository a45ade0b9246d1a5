"""Content-addressed stage artifacts: a path derived from the config that determines it, written atomically.

Each artifact is a directory `<root>/<kind>/<hash>/` holding the stage's files and a `manifest.json` with the
key, a sha256 of every file, and library versions. A directory is only ever renamed into place once complete,
under a file lock, so a killed run leaves nothing half-written and two jobs never build the same artifact.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, ListConfig, OmegaConf

from w2s.errors import StorageError
from w2s.tracking import check_terminated

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: How many times each kind was built (not reused) in this process: tests and the sweep benchmark read it.
BUILDS: Counter[str] = Counter()
#: (kind, key) of every build in this process, in order: tells which supervisor or labels a sweep recomputed.
BUILT: list[tuple[str, Any]] = []


def to_plain(obj: Any) -> Any:
    """Resolve OmegaConf containers into plain, JSON-able Python values."""
    if isinstance(obj, DictConfig | ListConfig):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


def key_hash(key: Any) -> str:
    """Stable hash of a config fragment (sorted JSON), 16 hex characters."""
    blob = json.dumps(to_plain(key), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    """Strict JSON (NaN becomes null, so every reader can parse it)."""
    return json.dumps(_finite(to_plain(obj)), indent=1, default=str, allow_nan=False)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour changes results."""
    import importlib.metadata as md

    out = {}
    for pkg in (
        "torch",
        "transformers",
        "datasets",
        "pytorch-lightning",
        "torchmetrics",
        "hydra-core",
        "w2s",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def verify(folder: Path) -> str | None:
    """None when the artifact is complete and untampered, else the reason it is not."""
    mpath = folder / MANIFEST
    if not mpath.exists():
        return "no manifest"
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError:
        return "unreadable manifest"
    actual = _checksums(folder)
    if actual != manifest.get("files"):
        changed = sorted(set(actual.items()) ^ set(manifest.get("files", {}).items()))
        return f"checksum mismatch in {sorted({name for name, _ in changed})}"
    return None


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a truncated one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_stale_temps(folder: Path) -> None:
    """Delete temp dirs of this artifact left by a killed build; only a lock holder builds, so none is live."""
    for tmp in folder.parent.glob(f".tmp-{folder.name}-*"):
        log.warning("removing %s left by an interrupted build", tmp)
        shutil.rmtree(tmp, ignore_errors=True)


#: errno values that mean "this disk cannot take the write": one error line, never a traceback.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def _storage_error(e: OSError, folder: Path) -> StorageError:
    reason = os.strerror(e.errno) if e.errno else str(e)
    return StorageError(
        f"cannot write the artifact {folder} ({reason}); the cache is unchanged: free space or point "
        f"paths.artifact_root (W2S_ARTIFACTS) at a writable disk and rerun"
    )


def cached(
    root: str | Path,
    kind: str,
    key: Any,
    build: Callable[[Path], dict[str, Any] | None],
    force: bool = False,
) -> Path:
    """Return the artifact folder for `key`, building it with `build(tmp_dir)` unless a verified copy exists.

    `build` writes its files into the given temporary folder and may return extra metadata for the manifest.
    A complete copy is found and verified without writing anything (no lock), so a read-only cache is usable.
    """
    key = to_plain(key)
    folder = Path(root) / kind / key_hash(key)
    check_terminated()  # a safe point: a SIGTERM swallowed earlier stops the run before the next stage
    # a folder exists only once complete (atomic rename): reading it needs no lock, and no write permission
    if not force and folder.exists() and verify(folder) is None:
        log.info("reusing %s artifact %s", kind, folder)
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder) + ".lock")
        lock.acquire()
    except OSError as e:  # a read-only root without a complete copy, or a full disk
        if e.errno in _NO_SPACE | _READ_ONLY:
            raise _storage_error(e, folder) from None
        raise
    # an fcntl lock: the kernel releases it when its process dies, so a killed run never blocks the next one
    try:
        _remove_stale_temps(folder)
        if folder.exists() and not force:
            problem = verify(folder)
            if problem is None:  # another job built it while this one waited for the lock
                log.info("reusing %s artifact %s", kind, folder)
                return folder
            log.warning("%s artifact %s is invalid (%s): recomputing", kind, folder, problem)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
        try:
            t0 = time.time()
            meta = build(tmp) or {}
            check_terminated()  # a SIGTERM lost inside the build must not rename its output into place
            manifest = {
                "kind": kind,
                "key": key,
                "meta": meta,
                "seconds": round(time.time() - t0, 3),
                "versions": versions(),
                "files": _checksums(tmp),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        except OSError as e:
            if e.errno in _NO_SPACE:  # the temp dir goes below; a complete artifact is never touched
                raise _storage_error(e, folder) from None
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock.release()
    BUILDS[kind] += 1
    BUILT.append((kind, key))
    log.info("built %s artifact %s in %.1fs", kind, folder, manifest["seconds"])
    return folder


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / MANIFEST).read_text())
