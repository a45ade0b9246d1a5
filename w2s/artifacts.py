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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, ListConfig, OmegaConf

from w2s import dist
from w2s.errors import StorageError
from w2s.signals import check_terminated

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


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


def umask_mode(mode: int = 0o666) -> int:
    """`mode` less the process umask: what `open()` would give a new file (mkstemp's own files are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a truncated one; its mode follows
    the umask (0644 under 022), so the group on a shared cluster can read results and reports."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), umask_mode())
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_stale_temps(folder: Path) -> None:
    """Delete temp dirs of this artifact left by a killed build; only a lock holder builds, so none is live."""
    for tmp in folder.parent.glob(f".tmp-{folder.name}-*"):
        log.warning("removing %s left by an interrupted build", tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _problem(folder: Path, requires: tuple[str, ...]) -> str | None:
    """Why `folder` cannot be reused (None: complete, untampered, holding every required file)."""
    if not folder.exists():
        return "absent"
    return verify(folder) or next((f"built without {n}" for n in requires if not (folder / n).exists()), None)


def _publish(tmp: Path, folder: Path, kind: str, key: Any, meta: dict[str, Any], seconds: float) -> None:
    """Write the manifest into a finished temp dir and rename it into place (the caller holds the lock)."""
    manifest = {
        "kind": kind,
        "key": key,
        "meta": meta,
        "seconds": round(seconds, 3),
        "built_at": time.time(),
        "versions": versions(),
        "files": _checksums(tmp),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    log.info("built %s artifact %s in %.1fs", kind, folder, seconds)


#: errno values that mean "this disk cannot take the write": one error line, never a traceback.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def _storage_error(e: OSError, folder: Path) -> StorageError:
    reason = os.strerror(e.errno) if e.errno else str(e)
    return StorageError(
        f"cannot write the artifact {folder} ({reason}); the cache is unchanged: free space or point "
        f"paths.artifact_root (W2S_ARTIFACTS) at a writable disk and rerun"
    )


#: True while rank 0 builds a stage alone: stages it builds inside that one are its own business (no barrier).
_SOLO = threading.local()


def cached(
    root: str | Path,
    kind: str,
    key: Any,
    build: Callable[[Path], dict[str, Any] | None],
    force: bool = False,
    requires: tuple[str, ...] = (),
    collective: bool = False,
) -> Path:
    """Return the artifact folder for `key`, building it with `build(tmp_dir)` unless a verified copy exists.

    `build` writes its files into the given temporary folder and may return extra metadata for the manifest.
    `requires` names files this caller needs: a verified copy stored without them (a stage built in another
    role, e.g. a student whose weights were not kept, now a chain step) is rebuilt with them.

    With several processes (`w2s.dist`), rank 0 alone checks, builds and writes; the others meet it at a
    barrier and read. A `collective` build (training, sharded prediction) runs on every rank, because its
    collectives need them all; rank 0's output is the one kept. No lock is ever held across a collective.
    """
    key = to_plain(key)
    folder = Path(root) / kind / key_hash(key)
    check_terminated()  # a safe point: a SIGTERM swallowed earlier stops the run before the next stage
    if dist.size() == 1 or getattr(_SOLO, "on", False):
        return _cached_here(folder, kind, key, build, force, requires)
    if not collective:
        if dist.is_zero():
            _SOLO.on = True
            try:
                _cached_here(folder, kind, key, build, force, requires)
            finally:
                _SOLO.on = False
        dist.barrier()
        return folder
    reuse = dist.broadcast(not force and _problem(folder, requires) is None if dist.is_zero() else None)
    if reuse:
        log.info("reusing %s artifact %s", kind, folder)
        return folder
    if dist.is_zero():
        folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent if dist.is_zero() else None, prefix=f".tmp-{folder.name}-"))
    os.chmod(tmp, umask_mode(0o777))  # a shared artifact root stays readable as the umask says
    try:
        t0 = time.time()
        meta = build(tmp) or {}
        check_terminated()  # a SIGTERM lost inside the build must not rename its output into place
        if dist.is_zero():
            with FileLock(str(folder) + ".lock"):
                _publish(tmp, folder, kind, key, meta, time.time() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    return folder


def _cached_here(
    folder: Path, kind: str, key: Any, build: Callable, force: bool, requires: tuple[str, ...]
) -> Path:
    """One process's check-or-build: a complete copy is read without any lock (a read-only cache works);
    otherwise the build runs under a file lock, so two jobs never build the same artifact."""
    if not force and _problem(folder, requires) is None:
        log.info("reusing %s artifact %s", kind, folder)
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # an fcntl lock: the kernel releases it when its process dies, so a killed run never blocks the next one
        lock = FileLock(str(folder) + ".lock")
        lock.acquire()
    except OSError as e:  # a read-only root without a complete copy, or a full disk
        if e.errno in _NO_SPACE | _READ_ONLY:
            raise _storage_error(e, folder) from None
        raise
    try:
        _remove_stale_temps(folder)
        problem = _problem(folder, requires)
        if problem is None and not force:
            log.info("reusing %s artifact %s (built meanwhile)", kind, folder)
            return folder
        if problem != "absent":
            log.warning("%s artifact %s is invalid (%s): recomputing", kind, folder, problem)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
        os.chmod(tmp, umask_mode(0o777))
        try:
            t0 = time.time()
            meta = build(tmp) or {}
            check_terminated()  # a SIGTERM lost inside the build must not rename its output into place
            _publish(tmp, folder, kind, key, meta, time.time() - t0)
        except OSError as e:
            if e.errno in _NO_SPACE:  # the temp dir goes below; a complete artifact is never touched
                raise _storage_error(e, folder) from None
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return folder
    finally:
        lock.release()


def builds(root: str | Path, since: float) -> list[tuple[str, Any]]:
    """(kind, key) of every artifact under `root` built at or after `since`, in build order, whichever process
    built it: tells what a run or a sweep recomputed and what it reused."""
    found = []
    for mpath in Path(root).glob(f"*/*/{MANIFEST}"):
        try:
            m = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if m.get("built_at", 0) >= since:
            found.append((m["built_at"], m["kind"], m["key"]))
    return [(kind, key) for _, kind, key in sorted(found, key=lambda f: f[0])]


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / MANIFEST).read_text())
