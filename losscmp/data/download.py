"""Fetch the Oxford-IIIT Pet archives: resumable, checksummed, safely extracted.

- Resume: bytes already in ``<name>.part`` are kept and the rest is asked for
  with an HTTP Range request; a server that ignores Range sends it all again.
- Verification: sha256 of the whole archive before anything is extracted.
- Extraction: every member is checked first (no absolute paths, no "..", no
  links or devices pointing outside, nothing outside the archive's own folder),
  extracted into a staging folder, and only then moved into place, so a refused
  or broken archive leaves nothing.
- Ownership: each extracted folder holds a marker naming its archive's sha256.
  Only a folder with that marker is ever replaced; any other ``images/`` or
  ``annotations/`` (a user's own data) is refused, never deleted.
- One at a time: a download holds a lock on ``<dest>/.downloads``; a second one into the
  same folder (another terminal) is refused rather than writing the same part file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath

from losscmp.data.pets import DOWNLOADS_DIR, missing_parts
from losscmp.errors import DatasetError

Progress = Callable[[str, int, "int | None"], None]
CHUNK = 1 << 20
MARKER = ".losscmp-download"  # inside each extracted folder: written before it moves in


@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return PurePosixPath(self.url.split("?")[0]).name

    @property
    def folder(self) -> str:
        """The one top-level folder the archive extracts into: images.tar.gz holds images/."""
        return self.filename.split(".")[0]


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
    notice: Callable[[str], None] | None = None,
) -> Path:
    """Download, verify and extract every archive into ``dest``; returns ``dest``.

    ``notice`` gets a line when there is nothing to do (already downloaded)."""
    report = progress or (lambda label, done, total: None)
    if already_downloaded(dest, archives):
        (notice or (lambda line: None))(f"Oxford-IIIT Pet is already downloaded in {dest}")
        return dest
    refuse_foreign_folders(dest, archives)
    downloads = make_download_folder(dest)
    with only_download(downloads, dest):
        fetch_and_extract(dest, downloads, archives, report, timeout, keep_archives)
    return dest


@contextlib.contextmanager
def only_download(downloads: Path, dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on the download folder: a second download into ``dest``
    (another terminal) appended to the same part file, and both failed, one calling the
    archive corrupt and the other the disk unwritable."""
    try:
        handle = os.open(downloads, os.O_RDONLY | os.O_CLOEXEC)  # a folder: no lock file left
    except OSError as error:
        raise DatasetError(disk_failure(f"downloading into {dest}", error)) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DatasetError(disk_failure(f"locking {downloads}", error)) from None
            raise DatasetError(
                f"another download into {dest} is running; wait for it to finish (or stop "
                "it) and run this command again"
            ) from None
        yield
    finally:
        os.close(handle)  # releases the lock


def fetch_and_extract(
    dest: Path,
    downloads: Path,
    archives: Sequence[Archive],
    report: Progress,
    timeout: float,
    keep_archives: bool,
) -> None:
    try:
        for archive in archives:
            # A retry after a later archive failed must not fetch this one again (~0.8 GB).
            if not is_extracted(dest, archive):
                extract(fetch(archive, downloads, report, timeout), archive, dest, report)
            if not keep_archives:  # the extracted tree is what is used
                (downloads / archive.filename).unlink(missing_ok=True)
    except OSError as error:  # the local disk: the network's errors are handled in fetch
        raise DatasetError(disk_failure(f"downloading into {dest}", error)) from None


def make_download_folder(dest: Path) -> Path:
    downloads = dest / DOWNLOADS_DIR
    try:
        downloads.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        blocker = Path(error.filename or dest)
        what = "is not a folder"
        if blocker.is_symlink() and not blocker.exists():
            what = f"is a link to {blocker.readlink()}, which does not exist"
        raise DatasetError(
            f"cannot download into {dest}: {blocker} {what}; give another --data-dir"
        ) from None
    except OSError as error:
        raise DatasetError(
            f"cannot create {dest} ({error.strerror or error}); give a --data-dir you can write to"
        ) from None
    return downloads


def disk_failure(doing: str, error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the disk while {doing}: free some space and run the same "
            "command again (what is already downloaded is kept)"
        )
    where = f" ({error.filename})" if error.filename else ""
    return (
        f"cannot write while {doing}: {error.strerror or error}{where}; "
        "give a --data-dir you can write to"
    )


def marker_sha256(folder: Path) -> str | None:
    """The sha256 of the archive a pets download extracted ``folder`` from, or None
    when it was not made by one."""
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_extracted(dest: Path, archive: Archive) -> bool:
    return marker_sha256(dest / archive.folder) == archive.sha256


def already_downloaded(dest: Path, archives: Sequence[Archive]) -> bool:
    """Every archive extracted by a pets download, or, with no marker anywhere (an
    earlier losscmp, or unpacked by hand), every folder and list the loader needs."""
    if all(is_extracted(dest, archive) for archive in archives):
        return True
    unmarked = all(marker_sha256(dest / archive.folder) is None for archive in archives)
    return unmarked and not missing_parts(dest)


def refuse_foreign_folders(dest: Path, archives: Sequence[Archive]) -> None:
    """An ``images/`` or ``annotations/`` a pets download did not make is someone's data."""
    for archive in archives:
        check_replaceable(dest / archive.folder)


def check_replaceable(target: Path) -> None:
    if (target.exists() or target.is_symlink()) and marker_sha256(target) is None:
        raise DatasetError(
            f"{target} already exists and was not made by a pets download of this "
            "version; refusing to replace it: move it away (or, if an earlier losscmp left "
            "it half-downloaded, delete it) or give another --data-dir"
        )


def fetch(archive: Archive, folder: Path, report: Progress, timeout: float) -> Path:
    """The verified archive in ``folder``, resuming a partial download if there is one."""
    target = folder / archive.filename
    if target.is_file() and sha256_of(target) == archive.sha256:
        return target
    partial = target.with_name(target.name + ".part")
    try:
        receive(archive.url, partial, report, timeout)
    except urllib.error.HTTPError as error:
        raise DatasetError(http_failure(archive.url, error)) from None
    except (OSError, HTTPException) as error:
        if isinstance(error, OSError) and is_disk_error(error):
            raise  # download_pets says what to do about the disk
        done = partial.stat().st_size if partial.exists() else 0
        reason = getattr(error, "reason", None) or error
        raise DatasetError(
            f"download of {archive.url} stopped after {done:,} bytes ({reason}); "
            "run the same command again to resume"
        ) from None
    actual = sha256_of(partial)
    if actual != archive.sha256:
        problem = mismatch(archive, partial, actual)
        partial.unlink()
        raise DatasetError(problem)
    partial.replace(target)
    return target


def mismatch(archive: Archive, received: Path, actual: str) -> str:
    """What a download whose sha256 is not the archive's got: a web page (a proxy's or a
    network's login page, sent again on every retry) is said to be one."""
    size = received.stat().st_size
    with received.open("rb") as stream:
        start = stream.read(512).lstrip()
    if start.lower().startswith(b"<?xml"):
        # a storage service's error reply (S3, GCS: <Error><Code>...), not a login page
        said = " ".join(re.sub(rb"<[^>]*>", b" ", start).decode("utf-8", "replace").split())
        return (
            f"{archive.url} sent an XML reply ({size:,} bytes), not the archive: "
            f"'{said[:120]}'; check the address, or run the command again later"
        )
    if start.lower().startswith((b"<!doctype html", b"<html", b"<head")):
        return (
            f"{archive.url} sent a web page ({size:,} bytes), not the archive: a proxy or "
            "a network's login page? open the address in a browser, then run the command "
            "again"
        )
    return (
        f"{archive.filename} is corrupt ({size:,} bytes, sha256 {actual[:12]}..., expected "
        f"{archive.sha256[:12]}...); the file was removed, run the command again"
    )


def is_disk_error(error: OSError) -> bool:
    """Writing the part file failed, rather than the network (a reset, a timeout, an SSL
    error mid-body: all OSErrors too)."""
    disk = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM, errno.EIO)
    return error.filename is not None or error.errno in disk


def http_failure(url: str, error: urllib.error.HTTPError) -> str:
    if error.code in (404, 410):
        return (
            f"{url} is gone (HTTP {error.code} {error.reason}): the dataset has moved; "
            "see https://www.robots.ox.ac.uk/~vgg/data/pets/ for where it is now"
        )
    return (
        f"the server refused {url} (HTTP {error.code} {error.reason}); "
        "run the same command again later to resume"
    )


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


def extract(path: Path, archive: Archive, dest: Path, report: Progress) -> None:
    """Check every member, extract into a staging folder, mark it, then move it in."""
    staging = dest / f".extract-{path.name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, staging)
                check_in_folder(member, archive.folder)
            label = f"extract {path.name}"
            for count, member in enumerate(members, start=1):
                extract_member(tar, member, staging)
                if count % 500 == 0 or count == len(members):
                    report(label, count, len(members))
        extracted = staging / archive.folder
        extracted.mkdir(exist_ok=True)  # an archive of files only still gets its marker
        marker = {"archive": archive.filename, "sha256": archive.sha256}
        (extracted / MARKER).write_text(json.dumps(marker), encoding="utf-8")
        move_into_place(extracted, dest / archive.folder)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        first_line = str(error).splitlines()[0].rstrip(":") if str(error) else type(error).__name__
        raise DatasetError(
            f"{path.name} matches its published sha256 but is not a readable archive "
            f"({first_line}): it is kept in {path.parent}; try 'tar xf {path} -C {dest}' by hand"
        ) from None
    except OSError as error:
        raise DatasetError(disk_failure(f"extracting {path.name} into {dest}", error)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def move_into_place(new: Path, target: Path) -> None:
    """Swap ``new`` in for ``target``, a folder an earlier pets download made.

    The old folder is renamed aside first and deleted last, so a kill at any point
    leaves either the whole old folder, no folder (extracted again next time) or the
    whole new one: never a half-deleted tree that a later run would train on."""
    aside = target.with_name(f".replaced-{target.name}")
    shutil.rmtree(aside, ignore_errors=True)  # left by a run killed while deleting it
    check_replaceable(target)  # again: it may have appeared during the download
    if target.exists() or target.is_symlink():
        target.replace(aside)
    new.replace(target)
    shutil.rmtree(aside, ignore_errors=True)


def check_in_folder(member: tarfile.TarInfo, folder: str) -> None:
    """Every member lies in the archive's one folder, the only entry it may replace."""
    parts = PurePosixPath(member.name).parts
    if parts and parts[0] != folder:  # no parts: "./", the archive's own root
        refuse(member, f"is not inside {folder}/")


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
