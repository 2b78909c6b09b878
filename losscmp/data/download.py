"""Fetch the Oxford-IIIT Pet archives: resumable, checksummed, safely extracted.

- Resume: bytes already in ``<name>.part`` are kept and the rest is asked for
  with an HTTP Range request; a server that ignores Range sends it all again.
- Verification: sha256 of the whole archive before anything is extracted.
- Extraction: every member is checked first (no absolute paths, no "..", no
  links or devices pointing outside), extracted into a staging folder, and
  only then moved into place, so a refused or broken archive leaves nothing.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath

from losscmp.errors import DatasetError

Progress = Callable[[str, int, "int | None"], None]
CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return PurePosixPath(self.url.split("?")[0]).name


# The addresses torchvision's OxfordIIITPet uses.
PETS_ARCHIVES = (
    Archive(
        "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
        "67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d",
    ),
    Archive(
        "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
        "52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91",
    ),
)


def download_pets(
    dest: Path,
    progress: Progress | None = None,
    *,
    archives: Sequence[Archive] = PETS_ARCHIVES,
    timeout: float = 60.0,
    keep_archives: bool = False,
) -> Path:
    """Download, verify and extract every archive into ``dest``; returns ``dest``."""
    report = progress or (lambda label, done, total: None)
    downloads = dest / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        path = fetch(archive, downloads, report, timeout)
        extract(path, dest, report)
        if not keep_archives:
            path.unlink()  # the extracted tree is what is used; the archive is ~0.8 GB
    return dest


def fetch(archive: Archive, folder: Path, report: Progress, timeout: float) -> Path:
    """The verified archive in ``folder``, resuming a partial download if there is one."""
    target = folder / archive.filename
    if target.is_file() and sha256_of(target) == archive.sha256:
        return target
    partial = target.with_name(target.name + ".part")
    try:
        receive(archive.url, partial, report, timeout)
    except (urllib.error.URLError, HTTPException, OSError) as error:
        done = partial.stat().st_size if partial.exists() else 0
        reason = getattr(error, "reason", None) or error
        raise DatasetError(
            f"download of {archive.url} stopped after {done:,} bytes ({reason}); "
            "run the same command again to resume"
        ) from None
    actual = sha256_of(partial)
    if actual != archive.sha256:
        partial.unlink()
        raise DatasetError(
            f"{archive.filename} is corrupt (sha256 {actual[:12]}..., expected "
            f"{archive.sha256[:12]}...); the file was removed, run the command again"
        )
    partial.replace(target)
    return target


def receive(url: str, partial: Path, report: Progress, timeout: float) -> None:
    """Append the missing bytes of ``url`` to ``partial``."""
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "losscmp"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # nothing left to send: the part file is complete
            return
        raise
    with response:
        if start and response.status != 206:
            start = 0  # the server ignored Range: start over
        total = total_size(response, start)
        with partial.open("ab" if start else "wb") as stream:
            done = start
            report(partial.name.removesuffix(".part"), done, total)
            while chunk := response.read(CHUNK):
                stream.write(chunk)
                done += len(chunk)
                report(partial.name.removesuffix(".part"), done, total)
    if total is not None and done < total:
        raise ConnectionError(f"connection closed at {done:,} of {total:,} bytes")


def total_size(response, start: int) -> int | None:
    """Full size of the file from Content-Range, or start + Content-Length."""
    content_range = response.headers.get("Content-Range", "")
    match = re.search(r"/(\d+)$", content_range)
    if match:
        return int(match.group(1))
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def extract(archive: Path, dest: Path, report: Progress) -> None:
    """Check every member, extract into a staging folder, then move the top entries in."""
    staging = dest / f".extract-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, staging)
            label = f"extract {archive.name}"
            for count, member in enumerate(members, start=1):
                extract_member(tar, member, staging)
                if count % 500 == 0 or count == len(members):
                    report(label, count, len(members))
        for entry in staging.iterdir():
            destination = dest / entry.name
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            elif destination.exists() or destination.is_symlink():
                destination.unlink()
            entry.replace(destination)
    except (tarfile.TarError, EOFError) as error:
        raise DatasetError(f"{archive.name} is not a readable archive ({error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_member(member: tarfile.TarInfo, root: Path) -> None:
    """Refuse any member that would land, or link, outside ``root``."""
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        refuse(member, "is a device or special file")
    if PurePosixPath(member.name).is_absolute() or not inside(root, root / member.name):
        refuse(member, "would be written outside the target folder")
    if member.issym() or member.islnk():
        base = root if member.islnk() else (root / member.name).parent
        if PurePosixPath(member.linkname).is_absolute() or not inside(root, base / member.linkname):
            refuse(member, "links outside the target folder")


def inside(root: Path, path: Path) -> bool:
    resolved_root = root.resolve()
    resolved = path.resolve()
    return resolved == resolved_root or resolved_root in resolved.parents


def refuse(member: tarfile.TarInfo, why: str) -> None:
    raise DatasetError(f"archive member '{member.name}' {why}; refusing to extract")


def extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, staging: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the standard library checks too
        tar.extract(member, staging, filter="data")
    else:
        tar.extract(member, staging)
