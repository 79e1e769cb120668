"""Real data for the book: Omniglot, ORL faces, the Free Spoken Digit Dataset, and sinusoid tasks.

Where a file is looked for, in order:

1. ``$MLBOOK_DATA/<dataset>/<file>`` (CI and the authors point this at ``../shared/data``);
2. the user cache, ``$MLBOOK_CACHE`` or the platform's user cache directory (``~/.cache/mlbook``);
3. a download from the original public source into the user cache, checked against a known
   checksum before it is moved into place (this is the path a reader on Colab takes).

Decoded arrays are cached in the user cache directory, never in the data directory, which may be
read-only; that cache is best-effort (when it cannot be written, a warning says so once and the
arrays are returned all the same). Every write goes to a temporary name first and is then
renamed, so an interrupted download or extraction leaves nothing half-written.

Every problem with a data file (missing, truncated, corrupt, a failed or garbled download) raises
:class:`DataError`, whose message says which file and what to do. A bad file found in the user
cache is deleted (it was written by this module, and a later run downloads it afresh); a bad file
in the data directory is never touched.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import shutil
import struct
import tempfile
import time
import urllib.request
import warnings
import wave
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA_ENV = "MLBOOK_DATA"
CACHE_ENV = "MLBOOK_CACHE"
CACHE_VERSION = 1


class DataError(RuntimeError):
    """A data file is missing, truncated or corrupt. The message says which file and what to do."""


def _name(exc: BaseException) -> str:
    """An exception's type as a reader would look it up: ``zlib.error``, ``ValueError``."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


# What reading a damaged zip (or a damaged file inside one) can raise: a flipped bit in a zip's
# headers or compressed data surfaces as any of these, not only as zipfile.BadZipFile.
_READ_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, NotImplementedError,
    RuntimeError, ValueError, KeyError, IndexError, struct.error, wave.Error, SyntaxError,
)
# And what a download can raise besides those: a dropped connection or a garbled HTTP reply.
_DOWNLOAD_ERRORS = (http.client.HTTPException, *_READ_ERRORS)


# --------------------------------------------------------------------------------------------
# Where files come from
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One data file, how to check it, and where to download it from.

    ``sha256`` is the checksum of the file as the book's data directory holds it. A download from
    the original source may differ byte for byte (the Omniglot zips in the data directory were
    rebuilt), so ``url_md5`` or ``tree_sha256`` says how to check what the URL serves.
    ``tree_sha256`` is the sha256 of the sorted lines ``"<path>\\0<sha256 of contents>\\n"`` over
    the zip's data files, so it checks every image or recording, whatever the zip's own bytes.
    """

    dataset: str
    name: str
    sha256: str
    size: int
    url: str
    url_md5: str | None = None
    tree_sha256: str | None = None
    tree_suffix: str | None = None
    assemble: str | None = None  # how to build the file from what the URL serves


_OMNIGLOT_RAW = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
_SPLITS_RAW = (
    "https://raw.githubusercontent.com/jakesnell/prototypical-networks/"
    "c9bb4d258267c11cb6e23f0a19242d24ca98ad8a/data/omniglot/splits/vinyals/"
)
_FSDD_ARCHIVE = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/"
    "26eb9aaf76e81b692f806f9140c2d2777410d7a1.zip"
)
_ORL_RAW = (
    "https://raw.githubusercontent.com/sudharsan13296/Hands-On-Meta-Learning-With-Python/"
    "7a73852d3439f11b84fd1b8d0c79be83e1ae0046/"
    "02.%20Face%20and%20Audio%20Recognition%20using%20Siamese%20Networks/data/orl_faces/"
)

SOURCES: dict[tuple[str, str], Source] = {
    (s.dataset, s.name): s
    for s in [
        Source(
            "omniglot", "images_background.zip",
            "7a4cae547f16207901bd3acaabd866c1dbbef4d559dff26d797dbc6423a64a1e", 8588032,
            _OMNIGLOT_RAW + "images_background.zip", url_md5="68d2efa1b9178cc56df9314c21c6e718",
        ),
        Source(
            "omniglot", "images_evaluation.zip",
            "d84af890b3ea334eca90f1cb04c6111603a1b620d66b82f86414b8707fbd0e8d", 5863926,
            _OMNIGLOT_RAW + "images_evaluation.zip", url_md5="6b91aef0f799c5bb55b94e3f2daec811",
        ),
        Source(
            "omniglot", "splits_vinyals/train.txt",
            "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0", 133244,
            _SPLITS_RAW + "train.txt",
        ),
        Source(
            "omniglot", "splits_vinyals/val.txt",
            "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a", 21312,
            _SPLITS_RAW + "val.txt",
        ),
        Source(
            "omniglot", "splits_vinyals/test.txt",
            "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204", 50372,
            _SPLITS_RAW + "test.txt",
        ),
        Source(
            "omniglot", "splits_vinyals/trainval.txt",
            "5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a", 154556,
            _SPLITS_RAW + "trainval.txt",
        ),
        Source(
            "orl_faces", "orl_faces.zip",
            "99d4a541e6b11b2b8c591c4d52a53e79d470ba416b21b3592ddf4e62aae5bed3", 3777938,
            _ORL_RAW,
            tree_sha256="9972801133ec8ba8b06221a0f2c7c087c2e2a8d99a5fdd0ddfbf90beb82d5ac3",
            tree_suffix=".pgm", assemble="orl_files",
        ),
        Source(
            "fsdd", "fsdd_recordings.zip",
            "0bbdc00f4e742dc7144fe84109374a5fa92c030b198bdb3856d5396e895364ed", 16161478,
            _FSDD_ARCHIVE,
            tree_sha256="99aa5e3a7c822ab55b2a3b47e0b05aeb9f011c54837a12e3831ad24108330829",
            tree_suffix=".wav", assemble="fsdd_archive",
        ),
    ]
}


def data_dir() -> Path | None:
    """The data directory from ``$MLBOOK_DATA``, or None when the variable is unset."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The user cache (``$MLBOOK_CACHE``, else the platform's user cache dir for ``mlbook``)."""
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mlbook"))


def file_sha256(path: Path, algo: str = "sha256") -> str:
    digest = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def zip_tree_sha256(path: Path, suffix: str) -> str:
    """sha256 over ``"<path below the top folder>\\0<sha256>\\n"`` for the zip's data files.

    Raises ValueError when a data file is not inside a top folder, and whatever zipfile raises
    for a damaged zip (:func:`verify` turns all of these into DataError)."""
    lines = []
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            if name.endswith(suffix):
                if "/" not in name:
                    raise ValueError(
                        f"{path}: {name} is not inside a top folder (the zip should hold one "
                        f"folder with the {suffix} files below it)"
                    )
                rel = name.split("/", 1)[1]
                lines.append(f"{rel}\0{hashlib.sha256(zf.read(name)).hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _fix_hint(src: Source) -> str:
    return (
        f"Fix: point ${DATA_ENV} at a folder holding {src.dataset}/{src.name} (the book's CI uses "
        f"../shared/data), or delete the bad file and run again to download it from {src.url}."
    )


def verify(path: Path, src: Source) -> None:
    """Raise DataError unless ``path`` is the expected file (or a valid copy of the original)."""
    problem = _problem(path, src)
    if problem is not None:
        raise DataError(f"{problem} {_fix_hint(src)}")


def _problem(path: Path, src: Source) -> str | None:
    """What is wrong with ``path`` (one sentence), or None when it is the expected file."""
    size = path.stat().st_size
    if size == 0:
        return f"{path} is empty (expected {src.size} bytes)."
    if size == src.size and file_sha256(path) == src.sha256:
        return None
    if src.url_md5 and file_sha256(path, "md5") == src.url_md5:
        return None
    unreadable = ""
    if src.tree_sha256:
        try:
            if zip_tree_sha256(path, src.tree_suffix or "") == src.tree_sha256:
                return None
        except _READ_ERRORS as exc:
            # A damaged zip raises far more than BadZipFile (zlib.error, NotImplementedError for
            # a flipped compression method, RuntimeError for a flipped encryption flag...).
            unreadable = f" and cannot be read as the expected zip ({_name(exc)}: {exc})"
    what = "truncated" if size < src.size else "corrupt (its checksum does not match)"
    return f"{path} is {what}{unreadable}: {size} bytes, expected {src.size}."


def _in_folder(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def _bad_cached_file(path: Path, src: Source, problem: str) -> DataError:
    """Delete a bad file from the user cache (never from the data directory) and return the
    DataError that says so and what to do."""
    removed = ""
    if not _in_folder(path, data_dir()):
        try:
            path.unlink(missing_ok=True)
            removed = " It was in the user cache, so it has been deleted."
        except OSError as exc:
            removed = f" It is in the user cache but could not be deleted ({exc}): delete it."
    return DataError(
        f"{problem}{removed} Fix: run again to download {src.dataset}/{src.name} afresh from "
        f"{src.url}, or point ${DATA_ENV} at a folder holding {src.dataset}/{src.name} (the "
        "book's CI uses ../shared/data)."
    )


def _unreadable(path: Path, src: Source, exc: BaseException) -> DataError:
    """The DataError for a verified file that still cannot be decoded (deleted if cached)."""
    problem = f"{path} cannot be read ({_name(exc)}: {exc})."
    if _in_folder(path, cache_dir()) and not _in_folder(path, data_dir()):
        return _bad_cached_file(path, src, problem)
    return DataError(f"{problem} {_fix_hint(src)}")


# --------------------------------------------------------------------------------------------
# Downloads (for readers without the data directory, e.g. on Colab)
# --------------------------------------------------------------------------------------------


def _download(url: str, dest: Path, desc: str) -> None:
    """Download ``url`` to ``dest`` through a temporary file, with a progress bar."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_zip(dest: Path, top: str, members: Iterable[tuple[str, bytes]]) -> None:
    """Write ``members`` (relative name, bytes) under folder ``top`` into a new zip, atomically."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel, data in sorted(members):
                zf.writestr(zipfile.ZipInfo(f"{top}/{rel}", (1980, 1, 1, 0, 0, 0)), data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _assemble(src: Source, dest: Path) -> None:
    """Build ``dest`` from the original source when the source is not one ready-made file."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmpdir:
        tmp = Path(tmpdir)
        if src.assemble == "fsdd_archive":
            archive = tmp / "archive.zip"
            _download(src.url, archive, f"FSDD ({src.url.rsplit('/', 1)[-1]})")
            with zipfile.ZipFile(archive) as zf:
                members = [
                    (n.rsplit("/", 1)[-1], zf.read(n))
                    for n in zf.namelist()
                    if "/recordings/" in n and n.endswith(".wav")
                ]
            if not members:
                raise zipfile.BadZipFile(
                    f"the archive from {src.url} holds no recordings/*.wav files"
                )
            _write_zip(dest, "recordings", members)
        elif src.assemble == "orl_files":
            from tqdm.auto import tqdm

            members = []
            names = [f"s{s}/{i}.pgm" for s in range(1, 41) for i in range(1, 11)]
            for rel in tqdm(names, desc="ORL faces", leave=False):
                with urllib.request.urlopen(src.url + rel, timeout=60) as resp:
                    members.append((rel, resp.read()))
            _write_zip(dest, "orl_faces", members)
        else:  # pragma: no cover - a programming error, not a reader's
            raise ValueError(f"unknown assemble step {src.assemble!r}")


def fetch(dataset: str, name: str, *, download: bool = True) -> Path:
    """Path to a verified data file: from the data directory, the user cache, or a download."""
    src = SOURCES[(dataset, name)]
    root = data_dir()
    if root is not None:
        candidate = root / dataset / name
        if candidate.exists():
            verify(candidate, src)
            return candidate
    cached = cache_dir() / "data" / dataset / name
    if cached.exists():
        problem = _problem(cached, src)
        if problem is not None:
            # A bad copy left in the cache would make every later run fail the same way.
            raise _bad_cached_file(cached, src, problem)
        return cached
    where = f"${DATA_ENV}={root}" if root is not None else f"${DATA_ENV} (unset)"
    if not download:
        raise DataError(
            f"{dataset}/{name} was found neither in {where} nor in the cache {cached.parent}. "
            f"Fix: set {DATA_ENV} to a folder that holds {dataset}/{name}, or allow a download."
        )
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{dataset}/{name} was not in {where}, and the cache {cached.parent} cannot be "
            f"written to download it ({exc}). Fix: set {CACHE_ENV} to a writable folder, or set "
            f"{DATA_ENV} to a folder that holds {dataset}/{name}."
        ) from exc
    try:
        if src.assemble:
            _assemble(src, cached)
        else:
            _download(src.url, cached, f"{dataset}/{name}")
    except _DOWNLOAD_ERRORS as exc:
        # Every temporary file is gone by now (_download, _write_zip and _assemble clean up).
        if isinstance(exc, zipfile.BadZipFile):
            why = ("what the server sent is not the expected zip archive (a proxy or a login "
                   "page may have answered instead)")
        elif isinstance(exc, http.client.HTTPException):
            why = "the connection broke off or the reply was garbled"
        else:
            why = "the download failed"
        raise DataError(
            f"{dataset}/{name} was not in {where} nor in the cache, and downloading it from "
            f"{src.url} failed: {why} ({_name(exc)}: {exc}). Nothing was kept. Fix: "
            f"check the network (and any proxy) and run again, or set {DATA_ENV} to a folder "
            f"that holds {dataset}/{name}."
        ) from exc
    try:
        verify(cached, src)
    except DataError:
        cached.unlink(missing_ok=True)
        raise DataError(
            f"The download of {dataset}/{name} from {src.url} does not match its checksum, so it "
            "was deleted. Fix: run again; if it fails again, the source has changed: get the "
            f"file from the book's repository and set {DATA_ENV}."
        ) from None
    return cached


# --------------------------------------------------------------------------------------------
# Array caches
# --------------------------------------------------------------------------------------------


_CACHE_WARNED: set[str] = set()


def _warn_cache_once(folder: Path, exc: BaseException) -> None:
    if str(folder) in _CACHE_WARNED:
        return
    _CACHE_WARNED.add(str(folder))
    warnings.warn(
        f"the decoded-array cache {folder} cannot be written ({_name(exc)}: {exc}); "
        f"data will be decoded again on every load. Set {CACHE_ENV} to a writable folder to "
        "cache it.",
        RuntimeWarning,
        stacklevel=3,
    )


def _cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load arrays from ``<cache>/arrays/<key>.npz``, building and saving them atomically first.

    Saving is best-effort: when the cache cannot be written, a warning says so (once per
    folder) and the freshly built arrays are returned."""
    path = cache_dir() / "arrays" / f"{key}-v{CACHE_VERSION}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error, KeyError):
            try:
                path.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
            except OSError:
                pass
    arrays = build()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        _warn_cache_once(path.parent, exc)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return arrays


def clear_cache() -> None:
    """Delete the decoded-array cache (downloads are kept)."""
    shutil.rmtree(cache_dir() / "arrays", ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Few-shot datasets
# --------------------------------------------------------------------------------------------


@dataclass
class FewShotDataset:
    """Examples ``x`` with integer class labels ``y`` (0..n_classes-1) and the classes' names."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    name: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y, dtype=np.int64)
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)} labels")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.class_names)):
            raise ValueError("labels must lie in 0..len(class_names)-1")
        order = np.argsort(self.y, kind="stable")
        counts = np.bincount(self.y, minlength=len(self.class_names))
        width = int(counts.max()) if len(counts) else 0
        index = np.full((len(self.class_names), width), -1, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for c, (s, n) in enumerate(zip(starts, counts)):
            index[c, :n] = order[s : s + n]
        self.class_index = index  # (n_classes, max examples per class), -1 pads
        self.class_counts = counts

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        per = self.class_counts
        if len(per) == 0:
            per_s = "0"
        else:
            per_s = f"{per.min()}" if per.min() == per.max() else f"{per.min()}-{per.max()}"
        return (
            f"FewShotDataset({self.name!r}: {self.n_classes} classes, {per_s} examples each, "
            f"x {tuple(self.x.shape)} {self.x.dtype})"
        )

    def subset(self, classes: Iterable[int], name: str | None = None) -> FewShotDataset:
        """A dataset of only the given classes, relabelled 0..len(classes)-1 in that order.

        Each class may appear once: a repeated class would put the same examples under two
        labels (and into both the support and the query set of an episode)."""
        from .episodes import check_int

        classes = [check_int("class index", c, 0) for c in classes]
        bad = [c for c in classes if c >= self.n_classes]
        if bad:
            raise ValueError(
                f"class indices {bad} are out of range: the dataset has {self.n_classes} classes "
                f"(indices 0..{self.n_classes - 1})"
            )
        if len(set(classes)) != len(classes):
            dupes = sorted({c for c in classes if classes.count(c) > 1})
            raise ValueError(f"subset: class indices {dupes} are repeated; give each class once")
        parts = [self.class_index[c, : self.class_counts[c]] for c in classes]
        idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        y = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)] or [np.zeros(0)])
        return FewShotDataset(
            self.x[idx], y, [self.class_names[c] for c in classes],
            name or self.name, dict(self.info),
        )


# --------------------------------------------------------------------------------------------
# Omniglot
# --------------------------------------------------------------------------------------------

OMNIGLOT_SIZE = 28
OMNIGLOT_SETS = ("background", "evaluation")
VINYALS_SPLITS = ("train", "val", "test", "trainval")


def _decode_omniglot_png(data: bytes, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        # Area-average down, then invert: strokes are black on white, and we want strokes = 1.
        small = img.convert("L").resize((size, size), Image.Resampling.BOX)
        return 255 - np.asarray(small, dtype=np.uint8)


def _build_omniglot(size: int) -> dict[str, np.ndarray]:
    names, images, sets = [], [], []
    for set_id, which in enumerate(OMNIGLOT_SETS):
        path = fetch("omniglot", f"images_{which}.zip")
        try:
            with zipfile.ZipFile(path) as zf:
                by_char: dict[str, list[str]] = {}
                for n in sorted(zf.namelist()):
                    if n.endswith(".png"):
                        _, alphabet, char, _ = n.split("/")
                        by_char.setdefault(f"{alphabet}/{char}", []).append(n)
                blobs = [[zf.read(n) for n in files] for files in by_char.values()]
        except _READ_ERRORS as exc:
            raise _unreadable(path, SOURCES[("omniglot", path.name)], exc) from exc
        for char, files in zip(by_char, blobs):
            if len(files) != 20:
                raise DataError(f"{path}: {char} has {len(files)} drawings, expected 20")
        decoded = [_decode_omniglot_png(b, size) for files in blobs for b in files]
        images.append(np.stack(decoded).reshape(len(blobs), 20, size, size))
        names.extend(by_char)
        sets.extend([set_id] * len(blobs))
    return {
        "images": np.concatenate(images),
        "names": np.array(names),
        "sets": np.array(sets, dtype=np.int8),
    }


def _omniglot_base(size: int = OMNIGLOT_SIZE) -> tuple[np.ndarray, list[str], np.ndarray]:
    arrays = _cached_arrays(f"omniglot{size}", lambda: _build_omniglot(size))
    return arrays["images"], [str(n) for n in arrays["names"]], arrays["sets"]


def omniglot_split_classes(split: str) -> list[str]:
    """Class names (``Alphabet/characterNN/rotDDD``) of a split of Vinyals et al. (2016)."""
    if split not in VINYALS_SPLITS:
        raise ValueError(f"unknown Vinyals split {split!r}; use one of {VINYALS_SPLITS}")
    path = fetch("omniglot", f"splits_vinyals/{split}.txt")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_omniglot(split: str = "background", *, size: int = OMNIGLOT_SIZE) -> FewShotDataset:
    """Omniglot as 28x28 float32 images in [0, 1], strokes = 1, shape (N, 28, 28, 1).

    ``split``:
      - ``"background"`` (964 characters) or ``"evaluation"`` (659 characters): Lake et al.'s
        sets, no rotations;
      - ``"train"`` (4112 classes), ``"val"`` (688), ``"test"`` (1692), ``"trainval"`` (4800): the
        split of Vinyals et al. (2016), where each character rotated by 0, 90, 180 and 270 degrees
        is a class of its own. This is the protocol that the papers' Omniglot figures use.

    Each class has 20 examples (the 20 drawers). The first load decodes the zips (a few seconds);
    later loads read a uint8 cache from the user cache directory.
    """
    # Arguments first: a typo is reported at once, not after decoding (or downloading) the data.
    if split not in OMNIGLOT_SETS + VINYALS_SPLITS:
        raise ValueError(
            f"unknown Omniglot split {split!r}; use one of {OMNIGLOT_SETS + VINYALS_SPLITS}"
        )
    from .episodes import check_int

    size = check_int("size", size, 1)
    if size > 105:
        raise ValueError(f"size must be at most 105 (the drawings are 105x105 pixels), got {size}")
    images, names, sets = _omniglot_base(size)
    if split in OMNIGLOT_SETS:
        keep = np.flatnonzero(sets == OMNIGLOT_SETS.index(split))
        base = images[keep]
        class_names = [names[i] for i in keep]
        rotations = None
    elif split in VINYALS_SPLITS:
        lookup = {n: i for i, n in enumerate(names)}
        class_names = omniglot_split_classes(split)
        chars, rotations = [], []
        for cls in class_names:
            alphabet, char, rot = cls.split("/")
            chars.append(lookup[f"{alphabet}/{char}"])
            rotations.append(int(rot[3:]) // 90)
        base = images[np.array(chars)]
        rotations = np.array(rotations)
    x = base.astype(np.float32) / np.float32(255.0)  # (C, 20, size, size)
    if rotations is not None:
        for k in (1, 2, 3):
            sel = rotations == k
            x[sel] = np.rot90(x[sel], k=k, axes=(2, 3))
    n_classes, per_class = x.shape[:2]
    x = x.reshape(n_classes * per_class, size, size, 1)
    y = np.repeat(np.arange(n_classes), per_class)
    return FewShotDataset(x, y, class_names, f"omniglot-{split}", {"size": size})


# --------------------------------------------------------------------------------------------
# ORL faces
# --------------------------------------------------------------------------------------------


def _build_orl() -> dict[str, np.ndarray]:
    from PIL import Image

    path = fetch("orl_faces", "orl_faces.zip")
    images, subjects = [], []
    try:
        with zipfile.ZipFile(path) as zf:
            for s in range(1, 41):
                for i in range(1, 11):
                    with Image.open(io.BytesIO(zf.read(f"orl_faces/s{s}/{i}.pgm"))) as img:
                        images.append(np.asarray(img.convert("L"), dtype=np.uint8))
                    subjects.append(s - 1)
        stacked = np.stack(images)
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise _unreadable(path, SOURCES[("orl_faces", "orl_faces.zip")], exc) from exc
    return {"images": stacked, "subjects": np.array(subjects)}


def load_orl_faces() -> FewShotDataset:
    """ORL / AT&T faces: 40 people x 10 images, 112x92 float32 in [0, 1], shape (400, 112, 92, 1).

    Classes are the people ``s1`` ... ``s40``. Credit: AT&T Laboratories Cambridge (ORL).
    """
    arrays = _cached_arrays("orl_faces", _build_orl)
    x = arrays["images"].astype(np.float32)[..., None] / np.float32(255.0)
    return FewShotDataset(x, arrays["subjects"], [f"s{i}" for i in range(1, 41)], "orl_faces")


# --------------------------------------------------------------------------------------------
# Free Spoken Digit Dataset
# --------------------------------------------------------------------------------------------

FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


@dataclass
class AudioSet:
    """Variable-length recordings with their digit, speaker and take index."""

    waves: list[np.ndarray]
    digit: np.ndarray
    speaker: np.ndarray  # index into ``speakers``
    take: np.ndarray
    speakers: tuple[str, ...]
    sample_rate: int

    def __len__(self) -> int:
        return len(self.waves)

    def __repr__(self) -> str:
        secs = np.array([len(w) for w in self.waves]) / self.sample_rate
        return (
            f"AudioSet({len(self)} recordings, {len(self.speakers)} speakers, "
            f"{self.sample_rate} Hz, {secs.min():.2f}-{secs.max():.2f} s)"
        )


def load_fsdd() -> AudioSet:
    """The Free Spoken Digit Dataset: 3000 recordings (10 digits x 6 speakers x 50 takes), 8 kHz.

    Waves are float32 in [-1, 1]. The official split puts takes 0-4 in the test set.
    """
    path = fetch("fsdd", "fsdd_recordings.zip")
    src = SOURCES[("fsdd", "fsdd_recordings.zip")]
    waves, digit, speaker, take = [], [], [], []
    rate = None
    try:
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if not name.endswith(".wav"):
                    continue
                d, spk, t = Path(name).stem.split("_")
                with wave.open(io.BytesIO(zf.read(name))) as wav:
                    if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                        raise DataError(f"{path}: {name} is not 16-bit mono PCM. {_fix_hint(src)}")
                    rate = wav.getframerate()
                    pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
                waves.append(pcm.astype(np.float32) / np.float32(32768.0))
                digit.append(int(d))
                speaker.append(FSDD_SPEAKERS.index(spk))
                take.append(int(t))
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise _unreadable(path, src, exc) from exc
    if rate is None:
        raise DataError(f"{path} holds no .wav recordings. {_fix_hint(src)}")
    return AudioSet(
        waves, np.array(digit), np.array(speaker), np.array(take), FSDD_SPEAKERS, rate
    )


# --------------------------------------------------------------------------------------------
# Synthetic tasks: sinusoid regression (Finn et al. 2017)
# --------------------------------------------------------------------------------------------


@dataclass
class SinusoidTasks:
    """A batch of sinusoid tasks y = A sin(x - phase), with support and query points."""

    amplitude: np.ndarray  # (tasks,)
    phase: np.ndarray  # (tasks,)
    x_support: np.ndarray  # (tasks, k_shot, 1)
    y_support: np.ndarray
    x_query: np.ndarray  # (tasks, n_query, 1)
    y_query: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The true functions at points ``x`` (broadcast over tasks)."""
        return self.amplitude[:, None, None] * np.sin(x - self.phase[:, None, None])


def sinusoid_tasks(
    tasks: int,
    k_shot: int = 10,
    n_query: int = 10,
    *,
    amplitude: tuple[float, float] = (0.1, 5.0),
    phase: tuple[float, float] = (0.0, np.pi),
    x_range: tuple[float, float] = (-5.0, 5.0),
    seed: int | np.random.Generator | None = None,
) -> SinusoidTasks:
    """Sample sinusoid regression tasks with the ranges of Finn et al. (2017)."""
    if tasks <= 0 or k_shot <= 0 or n_query <= 0:
        raise ValueError("tasks, k_shot and n_query must be positive")
    rng = np.random.default_rng(seed)
    amp = rng.uniform(*amplitude, size=tasks).astype(np.float32)
    ph = rng.uniform(*phase, size=tasks).astype(np.float32)
    xs = rng.uniform(*x_range, size=(tasks, k_shot + n_query, 1)).astype(np.float32)
    ys = amp[:, None, None] * np.sin(xs - ph[:, None, None])
    return SinusoidTasks(
        amp, ph, xs[:, :k_shot], ys[:, :k_shot], xs[:, k_shot:], ys[:, k_shot:]
    )


def timed(fn: Callable[[], object]) -> float:
    """Seconds that ``fn()`` takes (for the load-time figures in the book)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
