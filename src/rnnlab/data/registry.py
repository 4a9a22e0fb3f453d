"""The lab's datasets by name: their files, upstream URLs, SHA-256 digests, and a verified local cache.

Files live in one data directory (``data_dir``). ``fetch`` returns a file that is already there when its
digest matches, downloads it through pooch otherwise (to a temporary file, moved into place only once
verified), and never uses a file whose digest is wrong. Files with no pinned digest upstream (the lab's
ElectricDevices ``.csv`` copies) are verified by their structure instead: rows, columns and labels.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs
import pooch
import requests
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from rnnlab.data.ucr import check_ucr
from rnnlab.errors import RnnlabError

DEFAULT_URL = "https://raw.githubusercontent.com/bejar/DLMAI/master"
MINILM_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main"


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: ``url`` is relative to the upstream base URL, or absolute for a file
    kept elsewhere (see :func:`file_url`)."""

    name: str
    url: str
    sha256: str | None = None  # None: no pinned digest upstream, ``check`` verifies the structure
    size: int | None = None  # bytes, where known (shown by ``rnnlab data list``)
    check: Callable[[Path], None] | None = None
    # Other local copies accepted in its place (name, sha256), e.g. the UCR archive's .tsv for the
    # lab's .csv: a user who already has them needs no download.
    alternatives: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str
    files: tuple[DataFile, ...]


def _electric(split: str, rows: int, tsv_sha256: str) -> DataFile:
    return DataFile(
        name=f"ElectricDevices_{split}.csv",
        url=f"Electric/ElectricDevices_{split}.csv",
        check=partial(check_ucr, rows=rows, length=96, labels=range(1, 8)),
        alternatives=((f"ElectricDevices_{split}.tsv", tsv_sha256),),
    )


def _single(name: str, task: str, url: str, sha256: str, size: int | None = None) -> Dataset:
    return Dataset(name, task, (DataFile(url.rsplit("/", 1)[1], url, sha256, size),))


# fmt: off
DATASETS: dict[str, Dataset] = {d.name: d for d in [
    _single("london-aq", "air-quality", "AirQuality/LondonAQ.npz",
            "fc2bf49ed6df8438e2479f94f21e16936003c41d4def39d98c6996af8355cdb0", 2448067),
    Dataset("electric-devices", "electric-devices", (
        _electric("TRAIN", 8926, "bf9b3e4ebb4bcecc4fe5ef36b5cde85383a78a9c7e83ed2834b00e440feb4d20"),
        _electric("TEST", 7711, "64ea1c73040b8c60ef63ebb4a36dc1c4b56b027f9a1dff342469dbf3853a3a20"),
    )),
    _single("airlines", "sentiment", "Sentiment/Airlines.csv",
            "5c6c7b3d8dc421000734b3ce6e016bd996adbbb681d4fcb065177016d5b43217", 2570937),
    _single("presidential", "sentiment", "Sentiment/Presidential.csv",
            "5ec5d6ff1c5c6cc50ca803d8985119d0218b50e125eadd5d6a4de92d1330f01f"),
    _single("poetry1", "text-generation", "TextGeneration/poetry1.txt.gz",
            "915e8accd9e3ebe2526fa804f02c735dbb1f9d117f5393916302ad23c20f9f31", 66771),
    _single("poetry2", "text-generation", "TextGeneration/poetry2.txt.gz",
            "4c29584e855d0426d31ec61e6f86ad05b58995edffd6da21239424ba4dab810f", 126625),
    _single("poetry3", "text-generation", "TextGeneration/poetry3.txt.gz",
            "667c0661aa0e653544d2685dec8a09af3dec04a92f31f386b87eff3ca228b32d"),
    _single("poetry4", "text-generation", "TextGeneration/poetry4.txt.gz",
            "8a47172ee68083a0c39c2d418013b4a649fd826acef84ecf46f63722c4344656"),
    # Not the lab's: the pretrained transformer benchmarks/transformer_teacher.py fine-tunes on
    # the tweets to teach a recurrent student (its weights and its word pieces).
    Dataset("minilm", "sentiment", (
        DataFile("model.safetensors", f"{MINILM_URL}/model.safetensors",
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376),
        DataFile("vocab.txt", f"{MINILM_URL}/vocab.txt",
                 "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231508),
    )),
]}
# fmt: on


def data_dir(override: str | Path | None = None) -> Path:
    """The data directory: ``override``, else env ``RNNLAB_DATA``, else the user cache dir."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get("RNNLAB_DATA"):
        return Path(os.environ["RNNLAB_DATA"]).expanduser()
    return Path(platformdirs.user_cache_dir("rnnlab"))


_resolve_dir = data_dir  # ``fetch``'s argument is also named ``data_dir``


def base_url() -> str:
    """Upstream base URL: env ``RNNLAB_DATA_URL`` (a mirror, or a test server), else the lab's repo."""
    return os.environ.get("RNNLAB_DATA_URL", DEFAULT_URL).rstrip("/")


def file_url(file: DataFile) -> str:
    """Where ``file`` is downloaded from. A mirror (``RNNLAB_DATA_URL``) serves every file: the
    lab's under their relative URL, the others under their URL's path."""
    if "://" not in file.url:
        return f"{base_url()}/{file.url}"
    mirror = os.environ.get("RNNLAB_DATA_URL")
    return mirror.rstrip("/") + urlsplit(file.url).path if mirror else file.url


def dataset(name: str) -> Dataset:
    """The registered dataset ``name``; an unknown name suggests the closest one."""
    if name in DATASETS:
        return DATASETS[name]
    score = {known: difflib.SequenceMatcher(None, name, known).ratio() for known in DATASETS}
    best = max(score, key=lambda known: score[known])  # a tie: the first registered (poetry1)
    hint = f"did you mean '{best}'? " if score[best] >= 0.5 else ""
    raise RnnlabError(f"unknown dataset '{name}': {hint}known: {', '.join(DATASETS)}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, digest: str) -> Path:
    got = sha256(path)
    if got != digest:
        raise RnnlabError(
            f"{path}: sha256 {got[:12]}… does not match the expected {digest[:12]}…; "
            "the file is corrupt or another version: delete it to download it again"
        )
    return path


def local_file(file: DataFile, directory: Path) -> Path | None:
    """The file (or an accepted alternative) present in ``directory``, without verifying it."""
    for name in (file.name, *(alt for alt, _ in file.alternatives)):
        if (directory / name).is_file():
            return directory / name
    return None


def _reason(err: Exception, file: DataFile) -> str:
    """A short reason for a failed download (pooch's and requests' messages span lines)."""
    if isinstance(err, requests.HTTPError):
        # An HTTPError raised without a response (by a caller, not by requests) has none to read.
        return f"HTTP {err.response.status_code}" if err.response is not None else "HTTP error"
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return "the connection closed before the whole file arrived"
    if isinstance(err, requests.ConnectionError):
        return (
            "cannot connect (no network?); a copy you have can be used in place: "
            "--data-dir or RNNLAB_DATA names its folder"
        )
    if isinstance(err, ValueError) and file.sha256:  # pooch found another digest
        return f"the downloaded file's sha256 is not the expected {file.sha256[:12]}…"
    return " ".join(str(err).split())


def fetch_file(file: DataFile, directory: Path) -> Path:
    """One verified local copy of ``file``: present and checked, or downloaded and checked."""
    for alt, digest in file.alternatives:
        if (directory / alt).is_file():
            return _verified(directory / alt, digest)
    path = directory / file.name
    if path.is_file() and file.sha256:
        return _verified(path, file.sha256)
    downloaded = not path.is_file()
    if downloaded:
        url = file_url(file)
        known = f"sha256:{file.sha256}" if file.sha256 else None
        bar = DownloadBar(file.name)
        # pooch draws its own bar only with tqdm; over HTTP it takes any object that acts like one.
        downloader = pooch.HTTPDownloader(progressbar=bar) if url.startswith("http") else None
        try:  # pooch writes a temporary file and moves it into place only once its digest matches
            pooch.retrieve(url, known, fname=file.name, path=directory, downloader=downloader)
        except (
            OSError,
            ValueError,
        ) as err:  # requests' errors are OSErrors, a bad digest a ValueError
            raise RnnlabError(
                f"{file.name}: download from {url} failed: {_reason(err, file)}"
            ) from None
        finally:
            bar.close()  # pooch closes it only after a download that worked
    if file.check is not None:
        try:
            file.check(path)
        except RnnlabError:
            if downloaded:  # a bad download must not stay in the cache (a user's own copy does)
                path.unlink()
            raise
    return path


_QUIET = contextvars.ContextVar("quiet_downloads", default=False)


class DownloadBar:
    """A download's progress on stderr (rich), through the calls pooch makes on a tqdm bar:
    ``total`` set, then ``update(bytes)``, and ``reset()``, ``update(total)``, ``close()`` at the end.
    """

    def __init__(self, name: str) -> None:
        self.total: int = 0
        self.done = 0
        console = Console(stderr=True, quiet=_QUIET.get())
        self.progress = Progress(
            TextColumn(name),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # a log file gets pooch's one line, not a bar
        )
        self.task = self.progress.add_task("download", total=None)
        self.progress.start()

    def update(self, n: int) -> None:
        self.done += n
        self.progress.update(self.task, total=self.total or None, completed=self.done)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        self.progress.stop()


@contextlib.contextmanager
def quiet_downloads(quiet: bool = True) -> Iterator[None]:
    """Within the block, with ``quiet``, a download shows no bar and does not announce itself
    (pooch's log line)."""
    logger = pooch.get_logger()
    # A filter, not setLevel: pooch's logger lives outside logging's registry, so a level change
    # would leave its cached "is INFO enabled?" answer stale after the block.
    if quiet:
        logger.addFilter(_warnings_only)
    token = _QUIET.set(quiet)
    try:
        yield
    finally:
        _QUIET.reset(token)
        logger.removeFilter(_warnings_only)


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def fetch(name: str, data_dir: str | Path | None = None) -> dict[str, Path]:
    """Every file of dataset ``name``, verified, as {file name: local path} in registry order.

    For ``electric-devices`` the order is TRAIN, TEST and the names are those found locally (the UCR
    ``.tsv`` copies when present, else the lab's ``.csv``).
    """
    ds = dataset(name)
    directory = _resolve_dir(data_dir)
    if directory.exists() and not directory.is_dir():
        raise RnnlabError(
            f"{directory}: the data directory is a file; point --data-dir or RNNLAB_DATA at a folder"
        )
    paths = [fetch_file(f, directory) for f in ds.files]
    return {p.name: p for p in paths}
