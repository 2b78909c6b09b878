"""Oxford-IIIT Pet on a generated miniature tree with the real dataset's quirks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import make_pets_tree

from losscmp.data import DATASET_REGISTRY, dataset_status, load_dataset, make_loader
from losscmp.data import pets as pets_module
from losscmp.data.pets import read_list
from losscmp.errors import DatasetError, ParameterError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "oxford-iiit-pet"
    made = make_pets_tree(root)
    return root, made


def load(root, spec="pets", size=32, limit=None):
    return load_dataset(spec, data_dir=root, image_size=size, limit=limit, seed=0)


def test_binary_default_ignores_the_border_band(tree):
    data = load(tree[0])
    assert data.mode == "binary" and data.out_channels == 1
    assert data.class_names == ("background", "pet")
    assert data.ignore_index == 255
    assert set(np.unique(data.train_masks)) == {0, 1, 255}
    assert data.train_images.shape[1:] == (32, 32, 3) and data.train_images.dtype == np.uint8


@pytest.mark.parametrize("border, value", [("fg", 1), ("bg", 0)])
def test_border_band_can_count_as_pet_or_background(tree, border, value):
    ignored = load(tree[0])
    data = load(tree[0], f"pets(border={border})")
    assert data.ignore_index is None
    band = ignored.train_masks == 255
    assert (data.train_masks[band] == value).all()
    assert np.array_equal(data.train_masks[~band], ignored.train_masks[~band])


def test_trimap_mode_has_three_classes(tree):
    data = load(tree[0], "pets(mode=trimap)")
    assert data.mode == "multiclass" and data.num_classes == data.out_channels == 3
    assert data.class_names == ("background", "pet", "border")
    assert set(np.unique(data.train_masks)) == {0, 1, 2}
    batch = next(iter(make_loader(data, split="val", batch_size=2)))
    assert batch["target"].dtype.is_floating_point is False


def test_every_quirk_is_handled(tree):
    root, made = tree
    data = load(root)
    info = data.info
    assert info["truncated_count"] == 1 and info["truncated"] == [f"images/{made['truncated']}.jpg"]
    assert info["unreadable_count"] == 1
    assert info["unreadable"] == [f"images/{made['unreadable']}.jpg"]
    assert info["missing_file_count"] == 2  # the listed id has neither image nor trimap
    assert f"images/{made['missing']}.jpg" in info["missing_files"]
    assert info["unlisted_images"] == 1  # Bengal_999; the .mat file is not an image
    listed_and_readable = len(made["trainval"]) - 1  # the unreadable one
    assert data.size("train") + data.size("val") == listed_and_readable


def test_missing_files_are_named_in_the_reports_notes(tree, tmp_path):
    from run_fixtures import write_run

    from losscmp.summary import load_run

    root, made = tree
    run_dir = write_run(tmp_path, datasets=("pets",), dataset_info=load(root).info)
    (missing,) = [note for note in load_run(run_dir).notes if "missing" in note]
    assert "2 listed file(s) are missing" in missing and f"images/{made['missing']}.jpg" in missing


def test_png_gif_rgba_and_grey_under_jpg_names_decode(tree):
    root, made = tree
    data = load(root, size=48)
    names = data.names("train") + data.names("val")
    images = np.concatenate([data.train_images, data.val_images])
    masks = np.concatenate([data.train_masks, data.val_masks])
    for quirk in ("png_as_jpg", "gif_as_jpg", "rgba", "grey"):
        position = names.index(made[quirk])
        pet, background = masks[position] == 1, masks[position] == 0
        contrast = images[position][pet].mean(axis=0) - images[position][background].mean(axis=0)
        assert np.abs(contrast).max() > 30, quirk  # the picture decoded, not a blank
    grey = images[names.index(made["grey"])].astype(int)
    assert np.array_equal(grey[..., 0], grey[..., 2])
    assert made["truncated"] in names and made["unreadable"] not in names


def test_split_is_fixed_90_10_and_independent_of_seed(tmp_path):
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=40, test=5, quirks=False)
    first = load_dataset("pets", data_dir=root, image_size=16, seed=0)
    other = load_dataset("pets", data_dir=root, image_size=16, seed=7)
    assert (first.size("train"), first.size("val"), first.size("test")) == (36, 4, 5)
    assert np.array_equal(first.val_images, other.val_images)
    train = {image.tobytes() for image in first.train_images}
    assert not any(image.tobytes() in train for image in first.val_images)


def test_test_split_is_the_official_test_list(tmp_path):
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=12, test=5, quirks=False)
    data = load(root, size=16)
    assert set(data.names("test")) == set(read_list(root / "annotations/test.txt"))
    assert not set(data.names("test")) & set(data.names("train") + data.names("val"))
    assert (data.size("train"), data.size("val"), data.size("test")) == (11, 1, 5)
    assert data.info["test"] == "the official test list"


def test_limit_is_a_deterministic_subset(tree):
    limited = load(tree[0], limit=8)
    again = load(tree[0], limit=8)
    assert limited.size("train") + limited.size("val") + limited.size("test") <= 8
    assert limited.size("test") >= 1
    assert np.array_equal(limited.train_images, again.train_images)


def test_cache_serves_later_loads_without_decoding(tmp_path, monkeypatch):
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=6, test=2, quirks=False)
    first = load(root, size=24)
    assert first.info["cache"] == "written"
    assert list((root / ".losscmp-cache").glob("pets-24px-*.npz"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(pets_module, "decode_pairs", no_decoding)
    second = load(root, "pets(mode=trimap)", size=24)
    assert second.info["cache"] == "hit"
    assert np.array_equal(first.train_images, second.train_images)


def test_changed_file_or_size_invalidates_the_cache(tmp_path):
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=6, test=2, quirks=False)
    load(root, size=24)
    assert load(root, size=16).info["cache"] == "written"
    trimap = next((root / "annotations" / "trimaps").glob("*.png"))
    stat = trimap.stat()
    os.utime(trimap, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load(root, size=24).info["cache"] == "written"


def test_an_edit_replaces_the_cache_entry_it_outdates_and_keeps_the_others(tmp_path):
    """Each edit left a full decoded copy behind for good (2 GB for Pets at 256 px)."""
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=6, test=2, quirks=False)
    load(root, size=24)
    load(root, size=16)
    load(root, size=24, limit=4)
    entries = sorted((root / ".losscmp-cache").iterdir())
    trimap = next((root / "annotations" / "trimaps").glob("*.png"))
    trimap.write_bytes(trimap.read_bytes())
    assert load(root, size=24).info["cache"] == "written"
    now = sorted((root / ".losscmp-cache").iterdir())
    (new,) = set(now) - set(entries)
    (gone,) = set(entries) - set(now)  # the full set at 24 px, before the edit
    assert gone.name.split(".")[0] == new.name.split(".")[0] and len(now) == 3
    assert load(root, size=24).info["cache"] == "hit"


def test_an_entry_named_as_before_families_is_replaced_too(tmp_path):
    """The entries written before names held a family ('pets-24px-<key>.npz', 2 GB for
    Pets at 256 px) were read by no load and deleted by none: each upgraded data folder
    kept one for good. The first entry written at that size replaces it."""
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=6, test=2, quirks=False)
    cache_dir = root / ".losscmp-cache"
    cache_dir.mkdir()
    old = cache_dir / "pets-24px-0123456789abcdef0123.npz"
    other_size = cache_dir / "pets-16px-0123456789abcdef0123.npz"
    for path in (old, other_size):
        path.write_bytes(b"an entry of an earlier version")
    assert load(root, size=24).info["cache"] == "written"
    assert not old.exists() and other_size.exists()
    assert len(list(cache_dir.glob("pets-24px-*.npz"))) == 1


@pytest.mark.parametrize("how", ["in place", "replaced"])
def test_an_edit_keeping_size_and_mtime_invalidates_the_cache(tmp_path, how):
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=6, test=2, quirks=False)
    load(root, size=24)
    trimaps = sorted((root / "annotations" / "trimaps").glob("*.png"))
    stat = trimaps[0].stat()
    if how == "in place":  # an editor, then os.utime
        trimaps[0].write_bytes(trimaps[1].read_bytes()[: stat.st_size].ljust(stat.st_size, b"\0"))
    else:  # cp -p / rsync -a: a new file renamed over the old
        edited = trimaps[0].with_suffix(".new")
        edited.write_bytes(trimaps[0].read_bytes())
        edited.replace(trimaps[0])
    os.utime(trimaps[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert trimaps[0].stat().st_size == stat.st_size
    assert load(root, size=24).info["cache"] == "written"


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the images array: a bad CRC-32
    path.write_bytes(bytes(data))


def drop_a_member(path):
    with np.load(path) as stored:
        kept = {name: stored[name] for name in stored.files if name != "trimaps"}
    with path.open("wb") as stream:
        np.savez(stream, **kept)


@pytest.mark.parametrize("damage", [truncate, flip_a_byte, drop_a_member])
def test_damaged_cache_file_is_rebuilt(tmp_path, damage):
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=6, test=2, quirks=False)
    first = load(root, size=24)
    (cached,) = (root / ".losscmp-cache").glob("pets-24px-*.npz")
    damage(cached)
    again = load(root, size=24)
    assert again.info["cache"] == "written"
    assert np.array_equal(first.train_masks, again.train_masks)
    assert load(root, size=24).info["cache"] == "hit"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_cache_files_are_made_as_the_umask_says(tmp_path, umask, mode):
    """Not mkstemp's 0600, so that others sharing the dataset folder can read them (under
    the usual umask); a private umask keeps them private."""
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=4, test=2, quirks=False)
    before = os.umask(umask)
    try:
        load(root, size=16)
    finally:
        os.umask(before)
    (cached,) = (root / ".losscmp-cache").glob("pets-16px-*.npz")
    assert cached.stat().st_mode & 0o777 == mode


def test_read_only_cache_folder_still_loads(tmp_path, monkeypatch):
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=6, test=2, quirks=False)
    monkeypatch.setattr(pets_module.cache, "save_cached", lambda *args, **kwargs: "read-only")
    assert load(root).info["cache"] == "read-only"


def test_data_dir_may_be_the_parent_folder(tree):
    root, _ = tree
    assert load(root.parent).info["source"] == str(root)


def test_data_dir_starting_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_pets_tree(tmp_path / "pets", trainval=4, test=2, quirks=False)
    assert load("~/pets", size=16).info["source"] == str(tmp_path / "pets")
    rows = {row["name"]: row for row in dataset_status(Path("~"))}
    assert rows["pets"]["present"] is False and rows["pets"]["path"].startswith(str(tmp_path))


def test_missing_dataset_names_the_download_command(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset("pets", data_dir=None, image_size=32)
    assert "losscmp datasets download pets" in str(error.value)
    with pytest.raises(DatasetError, match="nothing there.*download pets --data-dir"):
        load(tmp_path / "nowhere")


def test_a_data_dir_that_is_a_file_is_named_so(tmp_path):
    """It was 'missing images, annotations/...; fetch it with: ... --data-dir FILE', a
    download that cannot work there."""
    (tmp_path / "pets.tar.gz").write_bytes(b"an archive, not a folder")
    with pytest.raises(DatasetError) as error:
        load(tmp_path / "pets.tar.gz")
    assert str(error.value) == (
        f"--data-dir {tmp_path / 'pets.tar.gz'} is a file, not a folder: give the folder "
        "Oxford-IIIT Pet was downloaded into (losscmp datasets download pets makes it)"
    )


def test_partly_missing_layout_says_what_is_missing(tmp_path):
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=4, test=2, quirks=False)
    (root / "annotations" / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing annotations/test\.txt"):
        load(root)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("pets(mode=instance)", "mode='instance' is not one of 'binary', 'trimap'"),
        ("pets(border=maybe)", "border"),
        ("pets(mode=trimap,border=fg)", "border applies to mode=binary only"),
        ("pets(val_fraction=1.5)", "val_fraction"),
        ("pets(colour=1)", "has no parameter 'colour'"),
    ],
)
def test_bad_pets_parameters(tree, spec, message):
    with pytest.raises(ParameterError, match=message):
        load(tree[0], spec)


def test_status_rows(tree, tmp_path, monkeypatch):
    rows = {row["name"]: row for row in dataset_status(tree[0].parent)}
    assert list(rows) == [entry.name for entry in DATASET_REGISTRY]  # each, in its order
    assert rows["pets"]["present"] is True and rows["pets"]["path"] == str(tree[0])
    assert all(
        {"description", "present", "path", "how_to_get"} <= set(row) for row in rows.values()
    )
    incomplete = rows["pets"]["how_to_get"]  # the tree lacks a listed image and trimap
    assert incomplete.startswith("incomplete: 2 listed file(s) missing")
    absent = {row["name"]: row for row in dataset_status(tmp_path / "empty")}["pets"]
    assert absent["present"] is False
    # The command fetches it where this table looks: under --root, not the default folder.
    assert absent["how_to_get"] == (
        f"losscmp datasets download pets --data-dir {tmp_path / 'empty' / 'oxford-iiit-pet'}"
    )
    # The pets folder itself, as a download's --data-dir names it, is found there too.
    itself = {row["name"]: row for row in dataset_status(tree[0])}["pets"]
    assert itself["present"] is True and itself["path"] == str(tree[0])
    # So is one whose download was cut short: it is finished there, not begun elsewhere.
    (tmp_path / "cut" / ".downloads").mkdir(parents=True)
    cut = {row["name"]: row for row in dataset_status(tmp_path / "cut")}["pets"]
    assert cut["present"] is False and cut["path"] == str(tmp_path / "cut")
    assert cut["how_to_get"] == f"losscmp datasets download pets --data-dir {tmp_path / 'cut'}"
    monkeypatch.chdir(tmp_path)  # no datasets/ here
    default = {row["name"]: row for row in dataset_status(Path("datasets"))}["pets"]
    assert default["how_to_get"] == "losscmp datasets download pets"


def test_a_completed_download_replaces_the_entry_of_the_incomplete_tree(tmp_path):
    """The ids read are those whose files are present: an incomplete tree completed made a
    new entry and kept the old one for good (no load reads it again), 2 GB at 256 px; the
    entries had no lineage, which a folder dataset's have for files added or removed."""
    root = tmp_path / "pets"
    make_pets_tree(root, trainval=6, test=2, quirks=False)
    image = next((root / "images").glob("*.jpg"))
    kept = image.read_bytes()
    image.unlink()
    assert load(root, size=24).info["missing_file_count"] == 1
    load(root, size=16)  # another size: kept
    image.write_bytes(kept)
    assert load(root, size=24).info["cache"] == "written"
    entries = sorted(path.name for path in (root / ".losscmp-cache").glob("*.npz"))
    assert [name.split("-")[1] for name in entries] == ["16px", "24px"]
    assert load(root, size=24).info["cache"] == "hit"
