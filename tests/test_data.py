import hashlib
import http.client
import io
import shutil
import struct
import time
import zipfile

import numpy as np
import pytest

from mlbook_utils import data

# ---------------------------------------------------------------------------- Omniglot


def test_omniglot_sets_and_splits_have_the_documented_sizes(data_dir):
    expected = {"background": 964, "evaluation": 659, "train": 4112, "val": 688, "test": 1692,
                "trainval": 4800}
    for split, n_classes in expected.items():
        ds = data.load_omniglot(split)
        assert ds.n_classes == n_classes, split
        assert ds.x.shape == (n_classes * 20, 28, 28, 1)
        assert ds.x.dtype == np.float32
        assert (ds.class_counts == 20).all()


def test_omniglot_strokes_are_one_on_a_zero_background(omniglot_test):
    x = omniglot_test.x
    assert x.min() == 0.0 and x.max() == 1.0
    corners = x[:, [0, 0, -1, -1], [0, -1, 0, -1], 0]
    assert (corners == 0).mean() > 0.95, "background should be 0"
    assert 0.03 < x.mean() < 0.2, "strokes are a small fraction of the image"


def test_vinyals_rotations_are_rotated_copies(omniglot_test):
    names = omniglot_test.class_names
    base = names.index("Gurmukhi/character42/rot000")
    for k, rot in enumerate(("rot090", "rot180", "rot270"), start=1):
        other = names.index(f"Gurmukhi/character42/{rot}")
        a = omniglot_test.x[omniglot_test.class_index[base], ..., 0]
        b = omniglot_test.x[omniglot_test.class_index[other], ..., 0]
        np.testing.assert_array_equal(np.rot90(a, k=k, axes=(1, 2)), b)


def test_vinyals_train_and_test_share_no_character(data_dir):
    chars = {s: {c.rsplit("/", 1)[0] for c in data.omniglot_split_classes(s)}
             for s in ("train", "val", "test")}
    assert len(chars["train"]) == 1028 and len(chars["val"]) == 172
    assert len(chars["test"]) == 423
    assert not chars["train"] & chars["test"] and not chars["train"] & chars["val"]


def test_second_load_comes_from_the_cache_and_is_fast(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path))
    cold = time.perf_counter()
    first = data.load_omniglot("background")
    cold = time.perf_counter() - cold
    assert list((tmp_path / "arrays").glob("omniglot28-*.npz")), "cache written to user cache"
    assert not list(data_dir.rglob("*.npz")), "nothing is written into the data directory"
    warm = time.perf_counter()
    second = data.load_omniglot("background")
    warm = time.perf_counter() - warm
    np.testing.assert_array_equal(first.x, second.x)
    assert warm < 2.0, f"warm load took {warm:.2f} s"
    assert warm < cold


def test_a_damaged_array_cache_is_rebuilt(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path))
    ref = data.load_orl_faces()
    (cached,) = (tmp_path / "arrays").glob("orl_faces-*.npz")
    cached.write_bytes(cached.read_bytes()[:1000])
    again = data.load_orl_faces()
    np.testing.assert_array_equal(ref.x, again.x)


# ---------------------------------------------------------------------------- ORL and FSDD


def test_orl_faces(data_dir):
    ds = data.load_orl_faces()
    assert ds.x.shape == (400, 112, 92, 1) and ds.n_classes == 40
    assert (ds.class_counts == 10).all()
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0 and ds.x.std() > 0.1


def test_fsdd(data_dir):
    audio = data.load_fsdd()
    assert len(audio) == 3000 and audio.sample_rate == 8000
    assert np.bincount(audio.digit).tolist() == [300] * 10
    assert np.bincount(audio.speaker).tolist() == [500] * 6
    assert audio.take.min() == 0 and audio.take.max() == 49
    lengths = np.array([len(w) for w in audio.waves]) / audio.sample_rate
    assert 0.1 < lengths.min() and lengths.max() < 2.5
    assert max(np.abs(w).max() for w in audio.waves) <= 1.0


# ---------------------------------------------------------------------------- checks and errors


def _copy_source(data_dir, tmp_path, dataset, name):
    dest = tmp_path / "data" / dataset / name
    dest.parent.mkdir(parents=True)
    shutil.copy(data_dir / dataset / name, dest)
    return dest


def test_missing_file_error_names_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(data.DataError) as err:
        data.fetch("orl_faces", "orl_faces.zip", download=False)
    msg = str(err.value)
    assert "orl_faces/orl_faces.zip" in msg and "MLBOOK_DATA" in msg


def test_truncated_file_is_reported(data_dir, tmp_path, monkeypatch):
    dest = _copy_source(data_dir, tmp_path, "orl_faces", "orl_faces.zip")
    dest.chmod(0o644)
    dest.write_bytes(dest.read_bytes()[:100_000])
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    with pytest.raises(data.DataError, match="truncated") as err:
        data.fetch("orl_faces", "orl_faces.zip")
    assert str(dest) in str(err.value) and "Fix:" in str(err.value)


def test_corrupt_file_of_the_right_size_is_reported(data_dir, tmp_path, monkeypatch):
    dest = _copy_source(data_dir, tmp_path, "omniglot", "images_evaluation.zip")
    dest.chmod(0o644)
    raw = bytearray(dest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    dest.write_bytes(bytes(raw))
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    with pytest.raises(data.DataError, match="corrupt"):
        data.fetch("omniglot", "images_evaluation.zip")


def _with_url(monkeypatch, key, url):
    src = data.SOURCES[key]
    monkeypatch.setitem(data.SOURCES, key, data.Source(**{**src.__dict__, "url": url}))


def test_download_is_verified_and_moved_into_the_cache(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    key = ("omniglot", "splits_vinyals/val.txt")
    _with_url(monkeypatch, key, (data_dir / "omniglot/splits_vinyals/val.txt").as_uri())
    path = data.fetch(*key)
    assert path == tmp_path / "cache" / "data" / "omniglot" / "splits_vinyals" / "val.txt"
    assert data.file_sha256(path) == data.SOURCES[key].sha256


def test_a_bad_download_is_deleted(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "val.txt"
    fake.write_text("not the split\n")
    key = ("omniglot", "splits_vinyals/val.txt")
    _with_url(monkeypatch, key, fake.as_uri())
    with pytest.raises(data.DataError, match="does not match its checksum"):
        data.fetch(*key)
    left = list((tmp_path / "cache").rglob("*"))
    assert not [p for p in left if p.is_file()], f"files left behind: {left}"


def test_an_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))

    class Broken:
        headers = {"Content-Length": "1000"}

        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 2:
                raise ConnectionResetError("connection lost")
            return b"x" * 100

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: Broken())
    with pytest.raises(data.DataError, match="failed"):
        data.fetch("omniglot", "splits_vinyals/val.txt")
    left = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not left, f"files left behind: {left}"


def test_fsdd_is_assembled_from_the_upstream_archive_layout(data_dir, tmp_path, monkeypatch):
    # Build a zip laid out like GitHub's archive of the FSDD repository at the pinned commit.
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(data_dir / "fsdd/fsdd_recordings.zip") as src, \
            zipfile.ZipFile(archive, "w") as out:
        out.writestr("free-spoken-digit-dataset-26eb9aa/README.md", b"readme")
        for name in src.namelist():
            if name.endswith(".wav"):
                out.writestr(f"free-spoken-digit-dataset-26eb9aa/{name}", src.read(name))
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    _with_url(monkeypatch, ("fsdd", "fsdd_recordings.zip"), archive.as_uri())
    path = data.fetch("fsdd", "fsdd_recordings.zip")
    expected = data.SOURCES["fsdd", "fsdd_recordings.zip"].tree_sha256
    assert data.zip_tree_sha256(path, ".wav") == expected
    assert len(data.load_fsdd()) == 3000


def test_orl_is_assembled_from_single_files(data_dir, tmp_path, monkeypatch):
    folder = tmp_path / "orl"
    with zipfile.ZipFile(data_dir / "orl_faces/orl_faces.zip") as zf:
        zf.extractall(folder)
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    _with_url(monkeypatch, ("orl_faces", "orl_faces.zip"), (folder / "orl_faces").as_uri() + "/")
    path = data.fetch("orl_faces", "orl_faces.zip")
    assert path.parent == tmp_path / "cache" / "data" / "orl_faces"
    # One flipped byte in one face makes the assembled file fail its check and be deleted.
    (folder / "orl_faces/s7/3.pgm").write_bytes(b"P5 broken")
    path.unlink()
    with pytest.raises(data.DataError, match="checksum"):
        data.fetch("orl_faces", "orl_faces.zip")
    assert not path.exists()


def test_verify_accepts_the_original_upstream_file_by_md5(tmp_path):
    blob = b"pretend this is the upstream zip"
    src = data.Source("x", "f.zip", "0" * 64, 10**6, "file:///nowhere",
                      url_md5=hashlib.md5(blob).hexdigest())
    path = tmp_path / "f.zip"
    path.write_bytes(blob)
    data.verify(path, src)  # does not raise
    path.write_bytes(blob + b"!")
    with pytest.raises(data.DataError):
        data.verify(path, src)


# ---------------------------------------------------------------------------- damaged files


def _central_entry(raw, zf, name):
    """Offset of ``name``'s entry in the zip's central directory."""
    off = zf.start_dir
    while raw[off : off + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack("<HHH", raw[off + 28 : off + 34])
        if raw[off + 46 : off + 46 + n].decode() == name:
            return off
        off += 46 + n + m + k
    raise KeyError(name)


def _flipped_orl(data_dir, dest, damage):
    """A copy of the ORL zip with one bit flipped (the right size), or truncated."""
    raw = bytearray((data_dir / "orl_faces/orl_faces.zip").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo("orl_faces/s1/1.pgm")
        if damage == "method":  # deflate (8) becomes 9: NotImplementedError in zipfile
            raw[_central_entry(raw, zf, info.filename) + 10] ^= 1
        elif damage == "block":  # the deflate block type becomes 3 (reserved): zlib.error
            n, m = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
            first = info.header_offset + 30 + n + m
            btype = (raw[first] >> 1) & 3
            raw[first] ^= {1: 0b100, 2: 0b010}[btype]
        else:
            raw = raw[: len(raw) // 2]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(raw))
    return dest


@pytest.mark.parametrize("damage", ["method", "block"])
def test_a_flipped_bit_in_a_zip_is_a_data_error(data_dir, tmp_path, monkeypatch, damage):
    # Such flips used to escape verify() as a bare NotImplementedError or zlib.error.
    dest = _flipped_orl(data_dir, tmp_path / "data/orl_faces/orl_faces.zip", damage)
    assert dest.stat().st_size == data.SOURCES["orl_faces", "orl_faces.zip"].size
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(data.DataError, match="corrupt") as err:
        data.load_orl_faces()
    assert "Fix:" in str(err.value)
    assert dest.exists(), "a file in the data directory is never deleted"


@pytest.mark.parametrize("damage", ["block", "truncated"])
def test_a_bad_file_in_the_user_cache_is_deleted(data_dir, tmp_path, monkeypatch, damage):
    # It used to stay there, so that every later run failed in the same way.
    cached = _flipped_orl(data_dir, tmp_path / "cache/data/orl_faces/orl_faces.zip", damage)
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(data.DataError, match="user cache, so it has been deleted") as err:
        data.fetch("orl_faces", "orl_faces.zip", download=False)
    assert not cached.exists()
    assert "run again" in str(err.value) and "MLBOOK_DATA" in str(err.value)


def test_an_fsdd_zip_without_its_top_folder_is_a_data_error(data_dir, tmp_path, monkeypatch):
    # zip_tree_sha256 used to raise IndexError on a name without a folder.
    cached = tmp_path / "cache/data/fsdd/fsdd_recordings.zip"
    cached.parent.mkdir(parents=True)
    with zipfile.ZipFile(data_dir / "fsdd/fsdd_recordings.zip") as src, \
            zipfile.ZipFile(cached, "w") as out:
        for name in src.namelist()[:20]:
            if name.endswith(".wav"):
                out.writestr(name.rsplit("/", 1)[-1], src.read(name))
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(data.DataError, match="not inside a top folder"):
        data.load_fsdd()
    assert not cached.exists()


def _no_files_in(folder):
    left = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert not left, f"files left behind: {left}"


def test_a_download_that_is_not_a_zip_is_a_data_error(tmp_path, monkeypatch):
    # A proxy or login page served instead of the archive used to raise zipfile.BadZipFile.
    page = tmp_path / "login.html"
    page.write_text("<html><body>Please sign in to use this network</body></html>")
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))
    _with_url(monkeypatch, ("fsdd", "fsdd_recordings.zip"), page.as_uri())
    with pytest.raises(data.DataError, match="not the expected zip") as err:
        data.fetch("fsdd", "fsdd_recordings.zip")
    assert "Fix:" in str(err.value)
    _no_files_in(tmp_path / "cache")


@pytest.mark.parametrize("where", ["read", "open"])
@pytest.mark.parametrize("error", [http.client.IncompleteRead(b"x" * 100, 900),
                                   http.client.BadStatusLine("HTTP/1.1 garbage")],
                         ids=["IncompleteRead", "BadStatusLine"])
def test_a_dropped_connection_is_a_data_error(tmp_path, monkeypatch, error, where):
    # http.client.HTTPException is not an OSError: it used to escape fetch() raw.
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))

    class Dropping:
        headers = {"Content-Length": "1000"}

        def __init__(self):
            self.calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 1 or n == -1:
                raise error
            return b"x" * 100

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(*args, **kwargs):
        if where == "open":
            raise error
        return Dropping()

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    for key in (("omniglot", "splits_vinyals/val.txt"), ("orl_faces", "orl_faces.zip")):
        with pytest.raises(data.DataError, match="broke off") as err:
            data.fetch(*key)
        assert "Fix:" in str(err.value) and type(error).__name__ in str(err.value)
    _no_files_in(tmp_path / "cache")


# ---------------------------------------------------------------------------- arguments, cache


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(split="tset"), ValueError, "unknown Omniglot split 'tset'"),
    (dict(split="test", size=0), ValueError, "size must be a positive integer"),
    (dict(split="test", size=400), ValueError, "size must be at most 105"),
    (dict(split="test", size="28"), TypeError, "size must be an integer"),
    (dict(split="test", size=28.0), TypeError, "size must be an integer"),
])
def test_load_omniglot_checks_its_arguments_first(tmp_path, monkeypatch, kwargs, error, message):
    # A typo used to be reported only after decoding every image, or, without the data, as a
    # failed download. Now no file is even looked for.
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MLBOOK_CACHE", str(tmp_path / "cache"))

    def no_download(*args, **kw):
        raise AssertionError("a download was tried before the arguments were checked")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_download)
    with pytest.raises(error, match=message):
        data.load_omniglot(**kwargs)


def test_an_unwritable_cache_only_warns_once(data_dir, tmp_path, monkeypatch):
    # The load used to fail, after decoding, when the array cache could not be written.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLBOOK_CACHE", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="cannot be written") as caught:
        first = data.load_orl_faces()
        second = data.load_orl_faces()
    assert len([w for w in caught if "cannot be written" in str(w.message)]) == 1
    assert first.x.shape == (400, 112, 92, 1)
    np.testing.assert_array_equal(first.x, second.x)


def test_an_empty_dataset_has_a_repr_and_subset_refuses_repeated_classes():
    empty = data.FewShotDataset(np.zeros((0, 2)), [], [], "empty")
    assert "0 classes" in repr(empty)
    ds = data.FewShotDataset(np.arange(6)[:, None], [0, 0, 1, 1, 2, 2], list("abc"), "abc")
    # [0, 0] would put the same images under two labels, in the support and the query set.
    with pytest.raises(ValueError, match=r"\[0\] are repeated"):
        ds.subset([0, 0])
    with pytest.raises(ValueError, match="out of range"):
        ds.subset([3])
    with pytest.raises(ValueError, match=">= 0"):
        ds.subset([-1])
    assert len(ds.subset([])) == 0 and "0 classes" in repr(ds.subset([]))
    assert ds.subset(np.array([2, 0])).class_names == ["c", "a"]


# ---------------------------------------------------------------------------- datasets and tasks


def test_few_shot_dataset_indexes_ragged_classes():
    y = np.array([2, 0, 2, 1, 2, 0])
    ds = data.FewShotDataset(np.arange(6)[:, None], y, ["a", "b", "c"])
    assert ds.class_counts.tolist() == [2, 1, 3]
    for c in range(3):
        idx = ds.class_index[c, : ds.class_counts[c]]
        assert (y[idx] == c).all()
    assert (ds.class_index[1, 1:] == -1).all()
    sub = ds.subset([2, 0])
    assert sub.class_names == ["c", "a"] and sub.class_counts.tolist() == [3, 2]
    with pytest.raises(ValueError):
        data.FewShotDataset(np.zeros((3, 1)), [0, 1], ["a", "b"])


def test_sinusoid_tasks_follow_finn_et_al_ranges():
    tasks = data.sinusoid_tasks(500, k_shot=5, n_query=7, seed=0)
    assert tasks.x_support.shape == (500, 5, 1) and tasks.y_query.shape == (500, 7, 1)
    assert 0.1 <= tasks.amplitude.min() and tasks.amplitude.max() <= 5.0
    assert 0.0 <= tasks.phase.min() and tasks.phase.max() <= np.pi
    assert -5 <= tasks.x_support.min() and tasks.x_query.max() <= 5
    np.testing.assert_allclose(tasks(tasks.x_query), tasks.y_query, rtol=1e-5, atol=1e-5)
    again = data.sinusoid_tasks(500, k_shot=5, n_query=7, seed=0)
    np.testing.assert_array_equal(tasks.y_support, again.y_support)
