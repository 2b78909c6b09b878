"""cache.py: an entry is read back whole and as written, or rebuilt."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import make_folder

from losscmp.data import cache, load_dataset
from losscmp.data import folder as folder_module

ARRAYS = {
    # Large enough that zipfile's read-ahead does not reach a member's end (and its CRC)
    # when numpy stops early.
    "images": np.arange(4 * 64 * 64 * 3, dtype=np.uint8).reshape(4, 64, 64, 3),
    "masks": np.arange(4 * 64 * 64, dtype=np.uint8).reshape(4, 64, 64) % 2,
}


def written_entry(tmp_path):
    path = tmp_path / cache.CACHE_DIRNAME / "folder-64px-0123456789ab.0123456789abcdef0123.npz"
    assert cache.save_cached(path, ARRAYS) == cache.WRITTEN
    return path


def replace_bytes(path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))


def smaller_shape(path):
    """np.load read the first two thirds of the images, its CRC never checked."""
    replace_bytes(path, b"'shape': (4, 64, 64, 3)", b"'shape': (4, 64, 64, 2)")


def huge_shape(path):
    replace_bytes(path, b"'shape': (4, 64, 64, 3)", b"'shape': (4, 64, 64, 9)")


def unparseable_header(path):
    """numpy's header parser raised tokenize.TokenError, a traceback for the user."""
    replace_bytes(
        path,
        b"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 64, 64, 3)",
        b"z'descr': '|u1', 'fortran_order': False, 'shape': (4, 64, 64, 3)",
    )


def unknown_compression(path):
    """zipfile raised NotImplementedError ('That compression method is not supported')."""
    data = bytearray(path.read_bytes())
    directory = data.rindex(b"PK\x01\x02")  # the central directory's last entry (masks)
    data[directory + 10] = 99  # its compression method
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [smaller_shape, huge_shape, unparseable_header])
def test_an_entry_whose_header_is_damaged_is_not_read(tmp_path, damage):
    path = written_entry(tmp_path)
    assert cache.load_cached(path, ARRAYS).keys() == ARRAYS.keys()
    damage(path)
    assert cache.load_cached(path, ARRAYS) is None


def test_an_entry_zipfile_cannot_read_is_not_read(tmp_path):
    path = written_entry(tmp_path)
    unknown_compression(path)
    assert cache.load_cached(path, ARRAYS) is None


def test_an_entry_is_read_back_as_written(tmp_path):
    stored = cache.load_cached(written_entry(tmp_path), ARRAYS)
    for name, array in ARRAYS.items():
        assert stored[name].dtype == array.dtype and np.array_equal(stored[name], array)


def test_a_folder_dataset_whose_entry_has_a_damaged_header_is_decoded_again(tmp_path):
    make_folder(tmp_path, count=6)
    first = load_dataset(f"folder:{tmp_path}", image_size=32, seed=0)
    (entry,) = (tmp_path / cache.CACHE_DIRNAME).glob("*.npz")
    replace_bytes(entry, b"'shape': (6, 32, 32, 3)", b"'shape': (6, 32, 32, 2)")
    again = load_dataset(f"folder:{tmp_path}", image_size=32, seed=0)
    assert again.info["cache"] == "written"
    assert again.fingerprint() == first.fingerprint()


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C while np.savez wrote left the half-written file (gigabytes for Pets) for good."""

    def interrupted(stream, **arrays):
        stream.write(b"half an entry")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "savez", interrupted)
    path = tmp_path / cache.CACHE_DIRNAME / "folder-64px-0123456789ab.0123456789abcdef0123.npz"
    with pytest.raises(KeyboardInterrupt):
        cache.save_cached(path, ARRAYS)
    assert list(path.parent.iterdir()) == []


def test_a_write_killed_half_way_is_swept_by_a_later_one(tmp_path):
    folder = tmp_path / cache.CACHE_DIRNAME
    folder.mkdir()
    killed, writing = folder / "tmpkilled.tmp", folder / "tmpwriting.tmp"
    for temporary in (killed, writing):
        temporary.write_bytes(b"half an entry")
    an_hour_ago = time.time() - cache.ABANDONED_AFTER_S - 1
    os.utime(killed, (an_hour_ago, an_hour_ago))
    path = written_entry(tmp_path)
    assert sorted(folder.iterdir()) == sorted([path, writing])


def test_a_full_disk_leaves_no_entry_and_no_temporary_file(tmp_path, monkeypatch):
    def full(stream, **arrays):
        stream.write(b"half an entry")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.np, "savez", full)
    path = tmp_path / cache.CACHE_DIRNAME / "folder-64px-0123456789ab.0123456789abcdef0123.npz"
    assert cache.save_cached(path, ARRAYS) == cache.DISK_FULL
    assert list(path.parent.iterdir()) == []


def entries(root):
    return sorted(path.name for path in (root / cache.CACHE_DIRNAME).glob("*.npz"))


def add_pair(root, stem):
    for folder, suffix in (("images", ".jpg"), ("masks", ".png")):
        source = root / folder / f"case_000{suffix}"
        (root / folder / f"{stem}{suffix}").write_bytes(source.read_bytes())


@pytest.mark.parametrize("change", ["added", "removed"])
def test_an_added_or_removed_pair_replaces_the_entry_it_outdates(tmp_path, change):
    """Each added or removed file left the entry of the earlier file list for good (no
    load reads it again: a file's change time never goes back), one more decoded copy of
    the whole dataset each time new images were annotated."""
    make_folder(tmp_path, count=8)
    load_dataset(f"folder:{tmp_path}", image_size=32, seed=0)
    before = entries(tmp_path)
    if change == "added":
        add_pair(tmp_path, "case_new")
    else:
        (tmp_path / "images" / "case_003.jpg").unlink()
        (tmp_path / "masks" / "case_003.png").unlink()
    again = load_dataset(f"folder:{tmp_path}", image_size=32, seed=0)
    assert again.info["cache"] == "written"
    after = entries(tmp_path)
    assert len(after) == 1 and after != before


def test_entries_of_other_sizes_limits_and_options_are_kept(tmp_path):
    make_folder(tmp_path, count=8)
    specs = [f"folder:{tmp_path}", f"folder(path={tmp_path},val_fraction=0.3)"]
    load_dataset(specs[0], image_size=32, seed=0)
    (outdated,) = entries(tmp_path)
    for spec in specs:
        for size, limit in ((32, None), (64, None), (32, 5)):
            load_dataset(spec, image_size=size, limit=limit, seed=0)
    before = entries(tmp_path)
    assert len(before) == 6
    add_pair(tmp_path, "case_new")
    load_dataset(specs[0], image_size=32, seed=0)
    after = entries(tmp_path)
    assert set(before) - set(after) == {outdated} and len(after) == 6
    assert load_dataset(specs[1], image_size=32, seed=0).info["cache"] == "written"
    assert len(entries(tmp_path)) == 6


def test_an_entry_that_would_fill_the_disk_is_not_written(tmp_path, monkeypatch):
    """The cache took the disk's last free bytes, then the run's results (often on the same
    disk) could not be written: the cache only saves time."""
    free = os.statvfs(tmp_path)
    room = sum(array.nbytes for array in ARRAYS.values()) + 256 * 2**20  # left free

    def statvfs_with(available):
        return lambda folder: os.statvfs_result((*free[:4], available // free.f_frsize, *free[5:]))

    path = tmp_path / cache.CACHE_DIRNAME / "folder-64px-0123456789ab.0123456789abcdef0123.npz"
    monkeypatch.setattr(cache.os, "statvfs", statvfs_with(room - 1 - free.f_frsize))
    assert cache.save_cached(path, ARRAYS) == cache.LOW_DISK_SPACE
    assert list(path.parent.iterdir()) == []
    monkeypatch.setattr(cache.os, "statvfs", statvfs_with(room + free.f_frsize))
    assert cache.save_cached(path, ARRAYS) == cache.WRITTEN


def test_an_entry_not_written_for_want_of_room_still_deletes_the_one_it_outdates(
    tmp_path, monkeypatch
):
    """The outdated entry stayed when the new one was not written: on a nearly full disk,
    a dead copy of the dataset kept for good, in the room the new one needed."""
    outdated = written_entry(tmp_path)
    free = os.statvfs(tmp_path)
    monkeypatch.setattr(
        cache.os, "statvfs", lambda folder: os.statvfs_result((*free[:4], 0, *free[5:]))
    )
    path = outdated.with_name("folder-64px-0123456789ab.fedcba9876543210fedc.npz")  # an edit
    assert cache.save_cached(path, ARRAYS) == cache.LOW_DISK_SPACE
    assert list(path.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (errno.ENOSPC, "disk full"),
        (errno.EDQUOT, "disk full"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "read-only"),
        (errno.EIO, "not written: Input/output error"),
    ],
)
def test_an_entry_not_written_says_why(tmp_path, monkeypatch, error, state):
    """A full disk was recorded as 'read-only': the user looked for the wrong remedy."""

    def failing(stream, **arrays):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(cache.np, "savez", failing)
    path = tmp_path / cache.CACHE_DIRNAME / "folder-64px-0123456789ab.0123456789abcdef0123.npz"
    assert cache.save_cached(path, ARRAYS) == state


def test_a_read_only_folder_is_told_from_a_full_disk(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cache.tempfile, "mkstemp", read_only)
    path = tmp_path / cache.CACHE_DIRNAME / "folder-64px-0123456789ab.0123456789abcdef0123.npz"
    assert cache.save_cached(path, ARRAYS) == cache.READ_ONLY


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("disk full", "the disk is full"),
        ("low disk space", "it would leave less than 256 MiB free on the disk"),
        ("read-only", "its folder is read-only"),
        ("not written: Input/output error", "not written: Input/output error"),
    ],
)
def test_a_cache_not_written_is_told_once_with_its_reason(state, why):
    assert cache.cache_note("folder(path=x)", {"cache": state}) == (
        f"folder(path=x): the decoded images were not cached ({why}): every run decodes them again"
    )
    assert cache.cache_note("folder(path=x)", {"cache": cache.HIT}) == ""
    assert cache.cache_note("folder(path=x)", {"cache": cache.WRITTEN}) == ""


def test_run_json_records_a_full_disk_as_such(tmp_path, monkeypatch):
    def full(stream, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.np, "savez", full)
    make_folder(tmp_path / "set", count=6)
    data = load_dataset(f"folder:{tmp_path / 'set'}", image_size=16)
    assert data.info["cache"] == "disk full"


# A data folder that cannot hold the cache: its entries go to the user's cache instead.


def cache_in_the_way(root):
    """A file where the data folder's cache folder goes: nothing can be written there,
    for root too (which chmod does not stop), as in a read-only folder."""
    (root / cache.CACHE_DIRNAME).write_bytes(b"not a folder")


def read_only_folder(root):
    os.chmod(root, 0o555)


AS_ROOT = os.geteuid() == 0
UNWRITABLE = [
    cache_in_the_way,
    pytest.param(
        read_only_folder, marks=pytest.mark.skipif(AS_ROOT, reason="root writes in any folder")
    ),
]


@pytest.mark.parametrize("unwritable", UNWRITABLE)
def test_a_data_folder_that_cannot_hold_the_cache_uses_the_users(tmp_path, monkeypatch, unwritable):
    """Every run decoded every image again where the data folder was read-only (a shared
    dataset, a read-only mount, another user's folder)."""
    data = tmp_path / "shared"
    make_folder(data, count=6)
    unwritable(data)
    try:
        first = load_dataset(f"folder:{data}", image_size=32, seed=0)
        user = cache.user_cache_folder(data)
        assert user.parent == Path(os.environ[cache.USER_CACHE_VARIABLE])
        assert first.info["cache"] == "written" and first.info["cache_dir"] == str(user)
        assert first.info["cache_data_folder"] != ""
        (entry,) = user.glob("folder-32px-*.npz")
        assert cache.stored_lineage(entry) is not None

        def no_decoding(*args, **kwargs):
            raise AssertionError("decoded again although cached")

        monkeypatch.setattr(folder_module, "decode_pairs", no_decoding)
        again = load_dataset(f"folder:{data}", image_size=32, seed=0)
    finally:
        os.chmod(data, 0o755)
    assert again.info["cache"] == "hit" and again.info["cache_dir"] == str(user)
    for split in ("train", "val", "test"):
        assert np.array_equal(again.images(split), first.images(split))
        assert np.array_equal(again.masks(split), first.masks(split))
    assert again.fingerprint() == first.fingerprint()


def test_the_data_folders_reason_is_recorded_and_told(tmp_path, monkeypatch):
    data = tmp_path / "shared"
    make_folder(data, count=6)
    real_mkstemp = cache.tempfile.mkstemp

    def read_only_data_folder(*args, dir, **kwargs):
        if Path(dir).is_relative_to(data):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(cache.tempfile, "mkstemp", read_only_data_folder)
    info = load_dataset(f"folder:{data}", image_size=32, seed=0).info
    user = cache.user_cache_folder(data)
    assert (info["cache"], info["cache_data_folder"]) == ("written", "read-only")
    assert cache.cache_note("folder(x)", info) == (
        f"folder(x): the decoded images are cached in {user}, not in the data folder "
        "(its folder is read-only)"
    )
    assert cache.cache_note("folder(x)", {**info, "cache": "hit"}) == ""


def test_a_damaged_entry_in_the_users_cache_is_rebuilt(tmp_path):
    data = tmp_path / "shared"
    make_folder(data, count=6)
    cache_in_the_way(data)
    first = load_dataset(f"folder:{data}", image_size=32, seed=0)
    (entry,) = cache.user_cache_folder(data).glob("*.npz")
    replace_bytes(entry, b"'shape': (6, 32, 32, 3)", b"'shape': (6, 32, 32, 2)")
    again = load_dataset(f"folder:{data}", image_size=32, seed=0)
    assert again.info["cache"] == "written"
    assert again.fingerprint() == first.fingerprint()


def test_an_entry_the_users_cache_cannot_take_either_is_told_with_both_reasons(
    tmp_path, monkeypatch
):
    data = tmp_path / "shared"
    make_folder(data, count=6)
    cache_in_the_way(data)
    monkeypatch.setattr(cache, "room_for", lambda folder, nbytes: False)
    info = load_dataset(f"folder:{data}", image_size=32, seed=0).info
    user = cache.user_cache_folder(data)
    assert info["cache"] == "low disk space" and list(user.glob("*.npz")) == []
    assert cache.cache_note("folder(x)", info) == (
        "folder(x): the decoded images were not cached (the data folder: not written: "
        f"File exists: {data / cache.CACHE_DIRNAME}; {user}: it would leave less than "
        "256 MiB free on the disk): every run decodes them again"
    )


def test_two_data_folders_never_share_a_user_cache_folder(tmp_path):
    """Same name, same files (their relative paths, sizes and times): other folders."""
    first, second = tmp_path / "a" / "set", tmp_path / "b" / "set"
    make_folder(first, count=4)
    make_folder(second, count=4)
    (tmp_path / "link").symlink_to(first)
    assert cache.user_cache_folder(first) != cache.user_cache_folder(second)
    assert cache.user_cache_folder(tmp_path / "link") == cache.user_cache_folder(first)
    assert cache.user_cache_folder(first).name.startswith("set-")


def test_the_user_cache_is_where_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(cache.USER_CACHE_VARIABLE, str(tmp_path / "chosen"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.user_cache_root() == tmp_path / "chosen"
    monkeypatch.delenv(cache.USER_CACHE_VARIABLE)
    assert cache.user_cache_root() == tmp_path / "xdg" / "losscmp"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # to be ignored, as XDG says
    assert cache.user_cache_root() == tmp_path / "home" / ".cache" / "losscmp"
