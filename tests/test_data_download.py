"""Download of the pets archives against a local HTTP server: resume, checksum, safe extraction."""

from __future__ import annotations

import errno
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest
from fixtures_data import make_pets_tree

from losscmp.data import download_dataset, load_dataset
from losscmp.data.download import Archive
from losscmp.errors import DatasetError, ParameterError


class ArchiveServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` with Range support; can cut the first reply of a file short."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ArchiveHandler)
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.honour_range = True
        self.requests: list[tuple[str, str | None]] = []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    server: ArchiveServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        range_header = self.headers.get("Range")
        self.server.requests.append((name, range_header))
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and self.server.honour_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if name in self.server.cut_once:
            self.server.cut_once.discard(name)
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    server = ArchiveServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def tar_gz(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def tar_folder(root: Path, folder: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(root / folder, arcname=folder)
    return buffer.getvalue()


def archive(server: ArchiveServer, name: str, body: bytes, sha256: str | None = None) -> Archive:
    server.files[name] = body
    return Archive(server.url(name), sha256 or hashlib.sha256(body).hexdigest())


@pytest.fixture
def pets_archives(tmp_path, server):
    """The two official archives, made from a miniature pets tree."""
    source = tmp_path / "source"
    make_pets_tree(source, trainval=10, test=3, quirks=False)
    return [
        archive(server, "images.tar.gz", tar_folder(source, "images")),
        archive(server, "annotations.tar.gz", tar_folder(source, "annotations")),
    ]


def test_download_verifies_extracts_and_loads(tmp_path, pets_archives):
    seen = []
    dest = tmp_path / "pets"
    result = download_dataset(
        "pets",
        dest,
        lambda label, done, total: seen.append((label, done, total)),
        archives=pets_archives,
    )
    assert result == dest
    assert (dest / "images").is_dir() and (dest / "annotations" / "trimaps").is_dir()
    assert not list((dest / ".downloads").iterdir())  # archives removed after extraction
    labels = {label for label, _, _ in seen}
    assert {"images.tar.gz", "annotations.tar.gz", "extract images.tar.gz"} <= labels
    finished = [(done, total) for label, done, total in seen if label == "images.tar.gz"][-1]
    assert finished[0] == finished[1] > 0
    data = load_dataset("pets", data_dir=dest, image_size=32)
    assert data.size("train") + data.size("val") == 10


def test_download_into_a_tilde_path_goes_to_the_home_folder(tmp_path, pets_archives, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # where a literal ~ folder would appear
    download_dataset("pets", Path("~/pets"), archives=pets_archives)
    assert (tmp_path / "home" / "pets" / "images").is_dir()
    assert not Path("~").exists()


def test_bad_checksum_is_refused_and_removed(tmp_path, server):
    bad = archive(server, "images.tar.gz", tar_gz({"images/a.txt": b"x"}), sha256="0" * 64)
    with pytest.raises(DatasetError, match="corrupt .*run the command again"):
        download_dataset("pets", tmp_path / "pets", archives=[bad])
    assert not (tmp_path / "pets" / "images").exists()
    assert not list((tmp_path / "pets" / ".downloads").iterdir())


def test_interrupted_download_resumes_with_range(tmp_path, server, pets_archives):
    server.cut_once.add("images.tar.gz")
    dest = tmp_path / "pets"
    with pytest.raises(DatasetError, match="stopped after .* run the same command again to resume"):
        download_dataset("pets", dest, archives=pets_archives)
    partial = dest / ".downloads" / "images.tar.gz.part"
    kept = partial.stat().st_size
    assert 0 < kept < len(server.files["images.tar.gz"])
    download_dataset("pets", dest, archives=pets_archives)
    assert ("images.tar.gz", f"bytes={kept}-") in server.requests
    assert load_dataset("pets", data_dir=dest, image_size=32).size("train") > 0


def test_server_ignoring_range_restarts_cleanly(tmp_path, server, pets_archives):
    server.cut_once.add("images.tar.gz")
    server.honour_range = False
    dest = tmp_path / "pets"
    with pytest.raises(DatasetError):
        download_dataset("pets", dest, archives=pets_archives)
    download_dataset("pets", dest, archives=pets_archives)
    assert (dest / "images").is_dir()


@pytest.mark.parametrize(
    "entries, links, message",
    [
        ({"../escape.txt": b"x"}, None, "outside the target"),
        ({"images/../../escape.txt": b"x"}, None, "outside the target"),
        ({"/tmp/losscmp-absolute.txt": b"x"}, None, "outside the target"),
        ({"images/a.txt": b"x"}, {"images/passwd": "/etc/passwd"}, "links outside"),
        ({"images/a.txt": b"x"}, {"images/up": "../../.."}, "links outside"),
    ],
)
def test_member_escaping_the_target_is_refused(tmp_path, server, entries, links, message):
    evil = archive(server, "images.tar.gz", tar_gz({"images/ok.txt": b"ok", **entries}, links))
    dest = tmp_path / "deep" / "pets"
    with pytest.raises(DatasetError, match=message):
        download_dataset("pets", dest, archives=[evil])
    assert not (tmp_path / "deep" / "escape.txt").exists()
    assert not (tmp_path / "escape.txt").exists()
    assert not (dest / "images").exists()  # nothing half-extracted


def test_unreachable_server_is_one_clear_line(tmp_path):
    dead = Archive("http://127.0.0.1:9/images.tar.gz", "0" * 64)
    with pytest.raises(DatasetError, match="run the same command again") as error:
        download_dataset("pets", tmp_path / "pets", archives=[dead], timeout=2)
    assert "\n" not in str(error.value)


def test_only_pets_can_be_downloaded(tmp_path):
    with pytest.raises(ParameterError, match="nothing to download"):
        download_dataset("synthetic", tmp_path)


def test_user_folders_in_the_target_are_refused_not_deleted(tmp_path, server, pets_archives):
    mine = tmp_path / "mycells"
    (mine / "images").mkdir(parents=True)
    (mine / "images" / "cell_1.png").write_bytes(b"my data")
    (mine / "images" / "notes.txt").write_text("do not lose")
    with pytest.raises(DatasetError, match=r"mycells/images already exists and was not made"):
        download_dataset("pets", mine, archives=pets_archives)
    assert sorted(path.name for path in (mine / "images").iterdir()) == ["cell_1.png", "notes.txt"]
    assert not server.requests  # refused before downloading anything
    assert not (mine / "annotations").exists()


def test_downloading_again_says_already_downloaded(tmp_path, server, pets_archives):
    dest = tmp_path / "pets"
    download_dataset("pets", dest, archives=pets_archives)
    server.requests.clear()
    notices = []
    download_dataset("pets", dest, archives=pets_archives, notice=notices.append)
    assert notices == [f"Oxford-IIIT Pet is already downloaded in {dest}"]
    assert not server.requests


def test_a_pets_tree_unpacked_by_hand_counts_as_downloaded(tmp_path, cli):
    make_pets_tree(tmp_path / "pets", trainval=4, test=2, quirks=False)
    result = cli("datasets", "download", "pets", "--data-dir", tmp_path / "pets")
    assert result.exit_code == 0, result.output
    assert "already downloaded" in result.output and "wrote" not in result.output


def test_a_new_archive_replaces_the_folder_an_earlier_download_made(tmp_path, server):
    dest = tmp_path / "pets"
    download_dataset("pets", dest, archives=[archive(server, "images.tar.gz", tar_gz(OLD))])
    download_dataset("pets", dest, archives=[archive(server, "images.tar.gz", tar_gz(NEW))])
    assert sorted(path.name for path in (dest / "images").glob("*.jpg")) == ["new.jpg"]
    assert not [path for path in dest.iterdir() if path.name.startswith(".replaced")]


OLD = {"images/old_1.jpg": b"old", "images/old_2.jpg": b"old"}
NEW = {"images/new.jpg": b"new"}


def test_a_kill_while_replacing_never_leaves_a_partial_tree(tmp_path, server, monkeypatch):
    from losscmp.data import download

    dest = tmp_path / "pets"
    download_dataset("pets", dest, archives=[archive(server, "images.tar.gz", tar_gz(OLD))])
    real_rmtree = download.shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        path = Path(path)
        if path.is_dir() and list(path.glob("old_*.jpg")):
            next(path.glob("old_*.jpg")).unlink()  # part of the old tree deleted, then killed
            raise KeyboardInterrupt
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(download.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        download_dataset("pets", dest, archives=[archive(server, "images.tar.gz", tar_gz(NEW))])
    assert sorted(path.name for path in (dest / "images").glob("*.jpg")) == ["new.jpg"]


def test_member_outside_the_archives_folder_is_refused(tmp_path, server):
    stray = archive(server, "images.tar.gz", tar_gz({"images/a.jpg": b"x", "notes.txt": b"x"}))
    with pytest.raises(DatasetError, match="'notes.txt' is not inside images/"):
        download_dataset("pets", tmp_path / "pets", archives=[stray])


def test_a_retry_skips_the_archives_already_extracted(tmp_path, server, pets_archives):
    dest = tmp_path / "pets"
    annotations = server.files.pop("annotations.tar.gz")
    with pytest.raises(DatasetError):
        download_dataset("pets", dest, archives=pets_archives)
    server.files["annotations.tar.gz"] = annotations
    download_dataset("pets", dest, archives=pets_archives)
    assert [name for name, _ in server.requests].count("images.tar.gz") == 1
    assert load_dataset("pets", data_dir=dest, image_size=32).size("test") == 3


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_extracting_says_free_space(tmp_path, pets_archives, monkeypatch):
    from losscmp.data import download

    monkeypatch.setattr(download, "extract_member", no_space)
    with pytest.raises(DatasetError, match="no space left .* extracting images.tar.gz.* free"):
        download_dataset("pets", tmp_path / "pets", archives=pets_archives)
    assert not (tmp_path / "pets" / "images").exists()


def test_disk_full_while_downloading_says_free_space(tmp_path, pets_archives):
    with pytest.raises(DatasetError, match="no space left .* free some space") as error:
        download_dataset("pets", tmp_path / "pets", no_space, archives=pets_archives)
    assert "resume" not in str(error.value).split(":")[0]


def test_an_ssl_error_mid_download_is_the_networks_not_the_disks(tmp_path, pets_archives):
    """ssl.SSLError is an OSError as well; it carries no file name and no disk errno."""
    import ssl

    def cut(name, done, total):
        if done:
            raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol")

    with pytest.raises(DatasetError, match="stopped after .* run the same command again"):
        download_dataset("pets", tmp_path / "pets", cut, archives=pets_archives)


def test_missing_address_says_it_is_gone(tmp_path, server):
    gone = Archive(server.url("moved.tar.gz"), "0" * 64)
    with pytest.raises(DatasetError, match="is gone .*HTTP 404.*has moved") as error:
        download_dataset("pets", tmp_path / "pets", archives=[gone])
    assert "run the same command again" not in str(error.value)


def test_a_checksummed_archive_that_will_not_extract_gives_a_next_step(tmp_path, server):
    broken = archive(server, "images.tar.gz", b"not a tar archive at all")
    with pytest.raises(DatasetError, match="matches its published sha256 .*tar xf") as error:
        download_dataset("pets", tmp_path / "pets", archives=[broken])
    assert "\n" not in str(error.value)


def unwritable_targets(tmp_path: Path) -> list[tuple[Path, str]]:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    return [
        (tmp_path / "dangling", "is a link to .*nowhere, which does not exist"),
        (tmp_path / "file", "cannot create .*file .Not a directory"),
        (tmp_path / "file" / "pets", "cannot create"),
        (Path("/proc/losscmp-pets"), "cannot create"),
    ]


def test_a_data_dir_that_cannot_be_a_folder_is_one_clear_line(tmp_path, pets_archives):
    for target, message in unwritable_targets(tmp_path):
        with pytest.raises(DatasetError, match=message):
            download_dataset("pets", target, archives=pets_archives)


def test_extraction_progress_counts_files_not_bytes():
    from rich.console import Console

    from losscmp.console import DownloadProgress

    progress = DownloadProgress()
    progress.update("images.tar.gz", 2048, 4096)
    progress.update("extract images.tar.gz", 31, 31)
    progress.progress.stop()
    screen = Console(record=True, width=120, file=io.StringIO())
    screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
    lines = screen.export_text().splitlines()
    assert "31/31 files" in lines[1] and "bytes" not in lines[1]
    assert "2.0/4.1 kB" in lines[0]


def test_ctrl_c_during_a_download_says_how_to_resume(cli, monkeypatch):
    import losscmp.data

    def interrupted(*args, progress, **kwargs):
        progress("images.tar.gz", 1000, 4000)  # the bar is on screen
        raise KeyboardInterrupt

    monkeypatch.setattr(losscmp.data, "download_dataset", interrupted)
    result = cli("datasets", "download", "pets")
    assert result.exit_code == 130
    lines = result.output.strip().splitlines()
    assert "images.tar.gz" in result.output
    # the bar's last frame first, then the line: it was printed above the bar
    assert lines[-1] == "losscmp: interrupted; run the same command again to resume the download"


def test_the_folder_above_the_pets_folder_downloads_nothing_again(tmp_path, server, pets_archives):
    """'--data-dir datasets', as 'run --data-dir datasets' reads it, fetched a second copy
    into datasets/images and datasets/annotations beside datasets/oxford-iiit-pet."""
    datasets = tmp_path / "datasets"
    download_dataset("pets", datasets / "oxford-iiit-pet", archives=pets_archives)
    server.requests.clear()
    notices = []
    result = download_dataset("pets", datasets, archives=pets_archives, notice=notices.append)
    assert result == datasets / "oxford-iiit-pet"
    assert notices == [f"Oxford-IIIT Pet is already downloaded in {datasets / 'oxford-iiit-pet'}"]
    assert not server.requests
    assert sorted(path.name for path in datasets.iterdir()) == ["oxford-iiit-pet"]


def test_a_download_begun_in_the_pets_folder_is_finished_there(tmp_path, server, pets_archives):
    server.cut_once.add("images.tar.gz")
    datasets = tmp_path / "datasets"
    with pytest.raises(DatasetError, match="run the same command again to resume"):
        download_dataset("pets", datasets / "oxford-iiit-pet", archives=pets_archives)
    download_dataset("pets", datasets, archives=pets_archives)
    assert [range_ for name, range_ in server.requests if name == "images.tar.gz"][-1]  # resumed
    assert sorted(path.name for path in datasets.iterdir()) == ["oxford-iiit-pet"]
    assert load_dataset("pets", data_dir=datasets, image_size=32).size("test") == 3


def test_a_second_download_into_the_same_folder_is_refused_while_one_runs(
    tmp_path, server, pets_archives
):
    """Two terminals appended to one part file: one said 'corrupt', the other 'give a
    --data-dir you can write to', and neither finished."""
    import fcntl
    import os

    dest = tmp_path / "pets"
    (dest / ".downloads").mkdir(parents=True)
    running = os.open(dest / ".downloads", os.O_RDONLY)  # the first download's lock
    fcntl.flock(running, fcntl.LOCK_EX)
    try:
        with pytest.raises(DatasetError, match=rf"another download into {dest} is running"):
            download_dataset("pets", dest, archives=pets_archives)
        assert not server.requests
    finally:
        os.close(running)
    download_dataset("pets", dest, archives=pets_archives)  # once it has finished
    assert load_dataset("pets", data_dir=dest, image_size=32).size("test") == 3


def test_a_web_page_instead_of_the_archive_is_called_one(tmp_path, server):
    """A proxy's login page came back 'corrupt ..., run the command again', and again."""
    page = b"<!DOCTYPE html>\n<html><body>Please log in to the network</body></html>"
    login = archive(server, "images.tar.gz", page, sha256="0" * 64)
    with pytest.raises(DatasetError) as error:
        download_dataset("pets", tmp_path / "pets", archives=[login])
    assert str(error.value) == (
        f"{login.url} sent a web page (70 bytes), not the archive: a proxy or a network's "
        "login page? open the address in a browser, then run the command again"
    )
    assert not list((tmp_path / "pets" / ".downloads").iterdir())


def test_a_storage_services_xml_error_is_quoted_not_called_a_login_page(tmp_path, server):
    reply = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        b"<Message>Request has expired</Message></Error>"
    )
    expired = archive(server, "images.tar.gz", reply, sha256="0" * 64)
    with pytest.raises(DatasetError) as error:
        download_dataset("pets", tmp_path / "pets", archives=[expired])
    assert str(error.value) == (
        f"{expired.url} sent an XML reply (117 bytes), not the archive: 'AccessDenied Request "
        "has expired'; check the address, or run the command again later"
    )


def test_a_corrupt_archive_says_how_much_arrived(tmp_path, server):
    bad = archive(server, "images.tar.gz", b"\x1f\x8b" + b"\x00" * 998, sha256="0" * 64)
    with pytest.raises(DatasetError, match=r"images.tar.gz is corrupt \(1,000 bytes, sha256 "):
        download_dataset("pets", tmp_path / "pets", archives=[bad])
