"""folder:PATH: pairing by stem, mask formats, binary/multiclass, val/, precise errors."""

from __future__ import annotations

import io
import os
import re
import warnings

import numpy as np
import pytest
from fixtures_data import encode, make_folder
from PIL import Image

from losscmp.data import load_dataset
from losscmp.errors import DatasetError, ParameterError


def load(spec, size=32, limit=None):
    return load_dataset(spec, data_dir=None, image_size=size, limit=limit, seed=0)


@pytest.mark.parametrize("mask_format", ["PNG", "GIF", "TIFF", "JPEG"])
def test_binary_masks_in_every_format(tmp_path, mask_format):
    make_folder(tmp_path, count=10, mask_format=mask_format)
    data = load(f"folder:{tmp_path}")
    assert data.mode == "binary" and data.ignore_index is None
    assert (data.size("train"), data.size("val"), data.size("test")) == (8, 1, 1)
    assert set(np.unique(data.train_masks)) == {0, 1}
    # JPEG noise around 0/255 edges must not turn background into foreground
    assert 0.05 < data.foreground_fraction("train") < 0.2


def test_jpeg_mask_noise_is_thresholded(tmp_path):
    make_folder(tmp_path, count=4, mask_format="PNG")
    exact = load(f"folder:{tmp_path}")
    jpeg_root = tmp_path / "jpeg"
    make_folder(jpeg_root, count=4, mask_format="JPEG")
    noisy = load(f"folder:{jpeg_root}")
    assert abs(exact.foreground_fraction("train") - noisy.foreground_fraction("train")) < 0.01


@pytest.mark.parametrize("suffix", ["_mask", "_segmentation"])
def test_mask_suffix_is_found_or_given(tmp_path, suffix):
    make_folder(tmp_path, count=6, mask_suffix=suffix)
    assert load(f"folder:{tmp_path}").info["mask_suffix"] == suffix
    explicit = load(f"folder(path={tmp_path},mask_suffix={suffix})")
    assert sum(explicit.size(split) for split in ("train", "val", "test")) == 6


def test_multiclass_masks_hold_class_indices(tmp_path):
    make_folder(tmp_path, count=12, num_classes=3)
    data = load(f"folder(path={tmp_path},num_classes=3)")
    assert data.mode == "multiclass" and data.out_channels == 3
    assert set(np.unique(np.concatenate([data.train_masks, data.val_masks]))) == {0, 1, 2}


def test_palette_gif_masks_keep_class_values(tmp_path):
    make_folder(tmp_path, count=6, num_classes=3, mask_format="GIF")
    data = load(f"folder(path={tmp_path},num_classes=3)")
    assert set(np.unique(np.concatenate([data.train_masks, data.val_masks]))) == {0, 1, 2}


def test_palette_masks_read_by_index_even_when_one_uses_only_black_and_white(tmp_path):
    from PIL import Image

    make_folder(tmp_path, count=8, num_classes=3)  # even cases hold class 1, odd ones 2
    palette = [0, 0, 0, 255, 255, 255, 255, 0, 0]  # background black, class 1 white, 2 red
    for mask_file in (tmp_path / "masks").glob("*.png"):
        image = Image.fromarray(np.asarray(Image.open(mask_file)), mode="P")
        image.putpalette(palette)
        image.save(mask_file)
    data = load(f"folder(path={tmp_path},num_classes=3)", size=40)
    masks = np.concatenate([data.train_masks, data.val_masks, data.test_masks])
    assert data.ignore_index is None and set(np.unique(masks)) == {0, 1, 2}


def write_binary_masks(root, values):
    """Every mask: ``values[0]`` inside a square, ``values[1:]`` in rings around it."""
    for index, mask_file in enumerate(sorted((root / "masks").glob("*.png"))):
        labels = np.zeros((40, 56), np.uint8)
        top = 4 + index % 4
        for ring, value in enumerate(reversed(values)):
            margin = len(values) - 1 - ring
            labels[top - margin : top + 16 + margin, 8 - margin : 30 + margin] = value
        mask_file.write_bytes(encode(labels, "PNG"))


def test_binary_masks_with_a_255_void_band_ignore_it(tmp_path):
    make_folder(tmp_path, count=8)
    write_binary_masks(tmp_path, [1, 255, 255])  # VOC style: object 1, void band 255
    data = load(f"folder:{tmp_path}", size=56)
    masks = np.concatenate([data.train_masks, data.val_masks, data.test_masks])
    assert data.ignore_index == 255 and set(np.unique(masks)) == {0, 1, 255}
    assert (masks == 1).sum() > (masks == 255).sum() > 0


def test_a_stray_pixel_in_0_255_masks_leaves_255_as_foreground(tmp_path):
    """One pixel of 254 in one of many 0/255 masks is no VOC set: reading 255 as ignore
    would leave that pixel the only foreground."""
    make_folder(tmp_path, count=8)
    write_binary_masks(tmp_path, [255])
    first = sorted((tmp_path / "masks").glob("*.png"))[0]
    labels = np.asarray(Image.open(first)).copy()
    labels[0, 0] = 254
    first.write_bytes(encode(labels, "PNG"))
    data = load(f"folder:{tmp_path}", size=56)
    assert data.ignore_index is None
    assert data.foreground_fraction("train") > 0.1


@pytest.mark.parametrize("values", [[255], [1], [255, 200, 128, 40]], ids=str)
def test_other_binary_masks_keep_every_non_zero_value_as_foreground(tmp_path, values):
    make_folder(tmp_path, count=8)
    write_binary_masks(tmp_path, values)  # 0/255, 0/1, anti-aliased edges
    data = load(f"folder:{tmp_path}", size=56)
    assert data.ignore_index is None and set(np.unique(data.train_masks)) == {0, 1}


def write_class_masks(root, shape=(40, 56)):
    """Masks of class indices 1, 2, 3 (a square each), a 255 band around each object."""
    for index, mask_file in enumerate(sorted((root / "masks").glob("*.png"))):
        labels = np.zeros(shape, np.uint8)
        for label, left in ((1, 2), (2, 20), (3, 38)):
            if (index + label) % 4:  # some masks lack a class
                top = 4 + (index * label) % 12
                labels[top - 1 : top + 13, left - 1 : left + 15] = 255
                labels[top : top + 12, left : left + 14] = label
        mask_file.write_bytes(encode(labels, "PNG"))


def test_class_indices_read_as_binary_are_named_for_the_report(tmp_path):
    """num_classes forgotten: the classes 1, 2, 3 and their 255 band were read as one
    foreground, and nothing said so; a report's note names them now (run.json keeps them)."""
    from losscmp.summary import _dataset_notes

    make_folder(tmp_path, count=8)
    write_class_masks(tmp_path)
    first, again = load(f"folder:{tmp_path}", size=64), load(f"folder:{tmp_path}", size=64)
    assert again.info["cache"] == "hit"
    for data in (first, again):
        assert data.mode == "binary" and data.info["merged_labels"] == [1, 2, 3, 255]
    assert _dataset_notes({"folder(path=X)": first.info}) == [
        "dataset 'folder(path=X)': its masks hold the labels 1, 2, 3 and 255, all read as one "
        "foreground (binary, num_classes=2); if they are classes, give num_classes=4 (255 "
        "then marks pixels to ignore)"
    ]
    classes = load(f"folder(path={tmp_path},num_classes=4)", size=64)
    assert "merged_labels" not in classes.info


@pytest.mark.parametrize(
    "values", [[255], [1], [1, 255, 255], [255, 200, 128, 40], [255, 1, 2]], ids=str
)
def test_one_label_with_its_edges_or_void_band_is_no_merge(tmp_path, values):
    """0/255, 0/1, VOC's 0/1/255 and anti-aliased edges (thin bands of other values)."""
    make_folder(tmp_path, count=8)
    write_binary_masks(tmp_path, values)
    assert "merged_labels" not in load(f"folder:{tmp_path}", size=56).info


def test_val_subfolder_is_the_validation_split(tmp_path):
    make_folder(tmp_path, count=8, val_count=3)
    data = load(f"folder:{tmp_path}")
    assert (data.size("train"), data.size("val"), data.size("test")) == (7, 3, 1)
    assert data.info["validation"] == "val/ folder"
    assert data.info["test"] == "0.1 of the pairs"


def test_test_subfolder_is_the_test_split(tmp_path):
    stems = make_folder(tmp_path, count=10, val_count=2, test_count=3)
    data = load(f"folder:{tmp_path}")
    assert (data.size("train"), data.size("val"), data.size("test")) == (10, 2, 3)
    assert data.names("test") == tuple(stems[12:])
    assert data.info["test"] == "test/ folder"


def test_test_fraction_is_fixed_and_leaves_validation_as_it_was(tmp_path):
    make_folder(tmp_path, count=20)
    data = load(f"folder(path={tmp_path},test_fraction=0.2)")
    other = load(f"folder(path={tmp_path},test_fraction=0.1)")
    assert (data.size("train"), data.size("val"), data.size("test")) == (14, 2, 4)
    assert data.names("val") == other.names("val")  # carved first in the same hash order
    assert set(other.names("test")) < set(data.names("test"))
    assert not set(data.names("test")) & set(data.names("train") + data.names("val"))


@pytest.mark.parametrize("split", ["val", "test"])
def test_an_image_in_images_and_a_split_folder_is_refused(tmp_path, split):
    stems = make_folder(tmp_path, count=6, **{f"{split}_count": 2})
    for folder, suffix in (("images", ".jpg"), ("masks", ".png")):
        for stem in stems[-2:]:
            source = tmp_path / split / folder / f"{stem}{suffix}"
            (tmp_path / folder / source.name).write_bytes(source.read_bytes())
    with pytest.raises(DatasetError, match=rf"2 image name\(s\) are in both images/ and {split}/"):
        load(f"folder:{tmp_path}")


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_fraction_for_a_split_given_as_a_folder_is_refused(tmp_path, split):
    make_folder(tmp_path, count=6, **{f"{split}_count": 2})
    with pytest.raises(ParameterError, match=rf"{split}_fraction=0.2 has no effect: .*{split}"):
        load(f"folder(path={tmp_path},{split}_fraction=0.2)")
    assert load(f"folder:{tmp_path}").info["validation" if split == "val" else "test"] == (
        f"{split}/ folder"
    )


def test_images_only_in_subfolders_are_explained(tmp_path):
    make_folder(tmp_path, count=4)
    (tmp_path / "images" / "benign").mkdir()
    for image in (tmp_path / "images").glob("*.jpg"):
        image.rename(tmp_path / "images" / "benign" / image.name)
    with pytest.raises(DatasetError, match=r"no images in .*images \(its subfolders, e.g. benign/"):
        load(f"folder:{tmp_path}")


def test_split_ratio_and_limit(tmp_path):
    make_folder(tmp_path, count=20)
    data = load(f"folder(path={tmp_path},val_fraction=0.25)")
    assert (data.size("train"), data.size("val"), data.size("test")) == (13, 5, 2)
    limited = load(f"folder:{tmp_path}", limit=10)
    assert (limited.size("train"), limited.size("val"), limited.size("test")) == (8, 1, 1)
    assert limited.names("train") == load(f"folder:{tmp_path}", limit=10).names("train")


def test_limit_takes_a_subset_spread_over_the_names(tmp_path):
    stems = make_folder(tmp_path, count=40)
    for index, stem in enumerate(stems):  # named by class, as many public sets are
        name = f"{'benign' if index < 20 else 'malignant'}_{index:03d}"
        for folder, suffix in (("images", ".jpg"), ("masks", ".png")):
            (tmp_path / folder / f"{stem}{suffix}").rename(tmp_path / folder / f"{name}{suffix}")
    data = load(f"folder:{tmp_path}", limit=10)
    assert data.names("train") == tuple(sorted(data.names("train")))
    assert {name.split("_")[0] for name in data.names("train")} == {"benign", "malignant"}


def test_second_load_comes_from_the_cache(tmp_path):
    make_folder(tmp_path, count=4)
    assert load(f"folder:{tmp_path}").info["cache"] == "written"
    assert load(f"folder:{tmp_path}").info["cache"] == "hit"


def test_an_edited_mask_replaces_its_cache_entry(tmp_path):
    make_folder(tmp_path, count=6)
    load(f"folder:{tmp_path}")
    mask = tmp_path / "masks" / "case_001.png"
    mask.write_bytes(encode(np.asarray(Image.open(mask))[::-1].copy(), "PNG"))
    assert load(f"folder:{tmp_path}").info["cache"] == "written"
    assert len(list((tmp_path / ".losscmp-cache").iterdir())) == 1


def test_images_without_masks_are_listed(tmp_path):
    make_folder(tmp_path, count=8)
    for stem in ("case_001", "case_002", "case_003", "case_004"):
        (tmp_path / "masks" / f"{stem}.png").unlink()
    with pytest.raises(
        DatasetError,
        match=r"4 image\(s\) .* have no mask .*case_001.jpg, "
        r"case_002.jpg, case_003.jpg and 1 more",
    ):
        load(f"folder:{tmp_path}")


def test_masks_without_images_are_listed(tmp_path):
    make_folder(tmp_path, count=5)
    (tmp_path / "images" / "case_002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 mask\(s\) .* have no image: case_002.png"):
        load(f"folder:{tmp_path}")


def test_size_mismatch_is_named(tmp_path):
    make_folder(tmp_path, count=4)
    (tmp_path / "masks" / "case_001.png").write_bytes(encode(np.zeros((20, 24), np.uint8), "PNG"))
    with pytest.raises(  # width x height, as viewers give it: '(56, 40)' read as rows first too
        DatasetError, match=r"differ in size: images/case_001.jpg 56x40 vs masks/case_001.png 24x20"
    ):
        load(f"folder:{tmp_path}")


def test_unreadable_file_is_named(tmp_path):
    make_folder(tmp_path, count=4)
    (tmp_path / "images" / "case_003.jpg").write_bytes(b"not a picture")
    with pytest.raises(DatasetError, match=r"not images: images/case_003.jpg$"):
        load(f"folder:{tmp_path}")


def test_an_unreadable_mask_named_like_its_image_is_named_with_its_folder(tmp_path):
    """images/x.png and masks/x.png, the plainest layout: 'x.png' alone says not which."""
    make_folder(tmp_path, count=4)
    for image in (tmp_path / "images").glob("*.jpg"):
        image.with_suffix(".png").write_bytes(encode(np.asarray(Image.open(image)), "PNG"))
        image.unlink()
    (tmp_path / "masks" / "case_002.png").write_bytes(b"not a picture")
    with pytest.raises(DatasetError, match=r"not images: masks/case_002.png$"):
        load(f"folder:{tmp_path}")


def exif_photos(root, shape, *, mask_as_stored=False):
    """Phone photos stored sideways (EXIF orientation 6: turn 90 degrees clockwise to view),
    bright in the top third as seen; masks drawn on the photo as seen (or as stored)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    for index in range(6):
        seen = np.zeros(shape, np.uint8)
        seen[: shape[0] // 3] = 255
        stored = np.ascontiguousarray(np.rot90(seen))  # seen, turned back counter-clockwise
        photo = np.repeat(np.where(stored > 0, 220, 30).astype(np.uint8)[..., None], 3, axis=2)
        Image.fromarray(photo).save(root / "images" / f"p{index}.jpg", exif=exif.tobytes())
        mask = stored if mask_as_stored else seen
        (root / "masks" / f"p{index}.png").write_bytes(encode(mask, "PNG"))


@pytest.mark.parametrize("shape", [(48, 48), (60, 36)], ids=["square", "portrait"])
def test_exif_rotated_photos_are_read_upright_like_their_masks(tmp_path, shape):
    """Square photos read as stored were silently a quarter turn off their masks; others were
    refused as 'differ in size' though every viewer shows them the mask's size."""
    exif_photos(tmp_path, shape)
    data = load(f"folder:{tmp_path}", size=48)
    images = np.concatenate([data.train_images, data.val_images, data.test_images])
    masks = np.concatenate([data.train_masks, data.val_masks, data.test_masks])
    bright = images.mean(axis=-1) > 128
    assert (bright == (masks == 1)).mean() > 0.97
    assert (masks[:, :12] == 1).all() and (masks[:, 20:] == 0).all()


def test_a_mask_drawn_on_the_unturned_pixels_says_the_image_is_read_upright(tmp_path):
    exif_photos(tmp_path, (60, 36), mask_as_stored=True)
    with pytest.raises(DatasetError) as caught:
        load(f"folder:{tmp_path}")
    assert re.search(r"images/p\d.jpg 36x60 upright vs masks/p\d.png 60x36", str(caught.value))
    assert "EXIF orientation" in str(caught.value)


def with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """The same JPEG, its pixels untouched, with an EXIF (APP1) segment holding ``exif``."""
    return jpeg[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]


def cut_short_exif() -> bytes:
    """A camera's make and a sideways orientation, the block cut in the make's text (stored
    after the tags): Pillow stops at the make, before the orientation."""
    exif = Image.Exif()
    exif[0x010F] = "Some Camera Maker Inc."
    exif[0x0112] = 6
    return exif.tobytes()[:-10]


@pytest.mark.parametrize(
    ("exif", "warned"),
    [
        # 5 tags said, and the block ends 1 byte into the first
        (b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01", "Corrupt EXIF data"),
        (cut_short_exif(), "Truncated File Read"),
    ],
    ids=["tag-count", "cut-short"],
)
def test_a_damaged_exif_block_reads_as_stored_without_a_warning(tmp_path, recwarn, exif, warned):
    """Pillow's warning was a raw Python line on stderr, amid the progress display. The
    file reads as a viewer that cannot read the block shows it: as stored."""
    jpeg = with_exif(encode(np.zeros((8, 8), np.uint8), "JPEG"), exif)
    with pytest.warns(UserWarning, match=warned):  # the block is damaged: Pillow says so
        Image.open(io.BytesIO(jpeg)).getexif()
    make_folder(tmp_path / "clean", mask_format="JPEG")
    make_folder(tmp_path / "damaged", mask_format="JPEG")
    for path in (tmp_path / "damaged").glob("*/*.jpg"):  # every image and mask
        path.write_bytes(with_exif(path.read_bytes(), exif))
    recwarn.clear()
    clean, damaged = load(f"folder:{tmp_path / 'clean'}"), load(f"folder:{tmp_path / 'damaged'}")
    assert _user_warnings(recwarn) == []
    for split in ("train", "val", "test"):
        for kind in ("images", "masks"):
            name = f"{split}_{kind}"
            np.testing.assert_array_equal(getattr(damaged, name), getattr(clean, name))
    # Only the reads were quiet: Pillow's warning is shown again after them.
    warnings.warn_explicit(warned, UserWarning, "TiffImagePlugin.py", 1, "PIL.TiffImagePlugin")
    assert _user_warnings(recwarn) == [warned]


def _user_warnings(recwarn) -> list[str]:
    """Pillow's kind: a ResourceWarning for a socket an earlier test left to the garbage
    collector may be recorded too, whenever the collector runs."""
    return [str(caught.message) for caught in recwarn if issubclass(caught.category, UserWarning)]


def test_jpeg_masks_of_0_and_1_are_read_not_thresholded_to_nothing(tmp_path):
    """A 0/1 mask saved as JPEG was cut at 128, and refused as holding no foreground."""
    make_folder(tmp_path, count=8)
    exact = load(f"folder:{tmp_path}")
    for mask_file in list((tmp_path / "masks").glob("*.png")):
        ones = (np.asarray(Image.open(mask_file)) > 0).astype(np.uint8)
        mask_file.with_suffix(".jpg").write_bytes(encode(ones, "JPEG", quality=90))
        mask_file.unlink()
    data = load(f"folder:{tmp_path}")
    assert set(np.unique(data.train_masks)) == {0, 1}
    assert abs(data.foreground_fraction("train") - exact.foreground_fraction("train")) < 0.01


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_a_masks_transparent_pixels_are_background(tmp_path, mode):
    """A white layer cut out by its alpha (as image editors export a selection) read as
    foreground everywhere: the transparent pixels' colour is white too."""
    make_folder(tmp_path, count=8)
    exact = load(f"folder:{tmp_path}")
    for mask_file in (tmp_path / "masks").glob("*.png"):
        alpha = np.asarray(Image.open(mask_file))
        white = np.full((*alpha.shape, len(mode) - 1), 255, np.uint8)
        Image.fromarray(np.dstack([white, alpha]).squeeze(), mode).save(mask_file)
    data = load(f"folder:{tmp_path}")
    assert np.array_equal(data.train_masks, exact.train_masks)


def test_photos_put_in_masks_are_named_not_read_as_all_foreground(tmp_path):
    make_folder(tmp_path, count=8)
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.linspace(0, 150, 40), np.linspace(0, 100, 56))
    for index, mask_file in enumerate(sorted((tmp_path / "masks").glob("*.png"))):
        if index % 4 == 1:  # a photo (smooth shading, sensor noise) copied over its mask
            photo = np.clip(ramp[..., None] + rng.normal(0, 6, (40, 56, 3)), 0, 255)
            encoded = encode(photo.astype(np.uint8), "PNG")
            (tmp_path / "images" / f"{mask_file.stem}.jpg").write_bytes(encoded)
            mask_file.write_bytes(encoded)
    with pytest.raises(DatasetError, match=r"2 mask\(s\) look like their images.*masks/case_001"):
        load(f"folder:{tmp_path}")


def test_a_dense_instance_map_is_a_binary_mask_not_a_photo(tmp_path):
    """Hundreds of small objects numbered 1, 2, ... cover most pixels with values each under
    1% of them hold, as a photo does; every non-zero value is foreground."""
    make_folder(tmp_path, count=6)
    rng = np.random.default_rng(0)
    rows, cols = np.indices((40, 56))
    centres = rng.uniform((0, 0), (40, 56), (250, 2))
    nearest = np.argmin(
        (rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2, axis=-1
    )
    instances = (1 + nearest % 254).astype(np.uint8)
    instances[:, :6] = 0  # a strip of background
    for mask_file in (tmp_path / "masks").glob("*.png"):
        mask_file.write_bytes(encode(instances, "PNG"))
    data = load(f"folder:{tmp_path}")
    assert set(np.unique(data.train_masks).tolist()) == {0, 1}
    assert data.train_masks.mean() == pytest.approx(50 / 56, abs=0.03)


def test_a_broken_link_is_named_not_passed_over(tmp_path):
    """It was skipped, so its mask was said to 'have no image' beside a file of that name."""
    make_folder(tmp_path, count=4)
    link = tmp_path / "images" / "case_001.jpg"
    link.unlink()
    link.symlink_to(tmp_path / "gone" / "case_001.jpg")
    with pytest.raises(DatasetError, match=r"images/case_001.jpg is a link to .*gone.* not exist"):
        load(f"folder:{tmp_path}")


def test_linked_files_are_read(tmp_path):
    make_folder(tmp_path / "real", count=6)
    for folder in ("images", "masks"):
        (tmp_path / "linked" / folder).mkdir(parents=True)
        for path in (tmp_path / "real" / folder).iterdir():
            (tmp_path / "linked" / folder / path.name).symlink_to(path)
    real, linked = load(f"folder:{tmp_path / 'real'}"), load(f"folder:{tmp_path / 'linked'}")
    assert np.array_equal(real.train_images, linked.train_images)
    assert real.names("test") == linked.names("test")


def test_names_in_decomposed_unicode_pair_with_composed_ones(tmp_path):
    """macOS's HFS+ writes 'é' as e + a combining accent: the names look alike everywhere."""
    import unicodedata

    make_folder(tmp_path, count=6)
    for folder, form in (("images", "NFC"), ("masks", "NFD")):
        for path in (tmp_path / folder).iterdir():
            path.rename(path.with_name(unicodedata.normalize(form, "café ") + path.name))
    data = load(f"folder:{tmp_path}")
    assert data.size("train") + data.size("val") + data.size("test") == 6


def test_names_that_are_not_utf8_are_read(tmp_path):
    """A Latin-1 name (unzipped from an old Windows archive) ended in a UnicodeEncodeError."""
    make_folder(tmp_path, count=6)
    for folder, extension in (("images", b".jpg"), ("masks", b".png")):
        old = next((tmp_path / folder).glob("case_001.*"))
        os.rename(os.fsencode(old), os.fsencode(tmp_path / folder) + b"/caf\xe9" + extension)
    data = load(f"folder:{tmp_path}")
    names = data.names("train") + data.names("val") + data.names("test")
    assert len(names) == 6 and os.fsdecode(b"caf\xe9") in names
    assert load(f"folder:{tmp_path}").info["cache"] == "hit"


def test_a_mask_named_in_other_letter_case_is_pointed_out(tmp_path):
    make_folder(tmp_path, count=4)
    (tmp_path / "masks" / "case_001.png").rename(tmp_path / "masks" / "Case_001.png")
    with pytest.raises(DatasetError, match=r"case_001.jpg \(masks/Case_001.png differs only in"):
        load(f"folder:{tmp_path}")


def _labels_of(tmp_path, stem: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(tmp_path / "masks" / f"{stem}.png"))


def test_sixteen_bit_masks_of_whole_labels_read_as_8_bit_ones(tmp_path):
    make_folder(tmp_path, count=4, num_classes=3)
    eight_bit = load(f"folder(path={tmp_path},num_classes=3)").masks("train")
    for stem in ("case_000", "case_002"):
        wide = _labels_of(tmp_path, stem).astype(np.uint16)
        (tmp_path / "masks" / f"{stem}.png").write_bytes(encode(wide, "PNG"))
    assert (load(f"folder(path={tmp_path},num_classes=3)").masks("train") == eight_bit).all()


@pytest.mark.parametrize(
    ("values", "shown"),
    [(np.uint16(300), "0, 1, 300"), (np.float32(0.5), "0, 0.5, 1")],
    ids=["16-bit-300", "float-half"],
)
def test_wide_mask_values_that_are_no_labels_are_refused_not_clipped(tmp_path, values, shown):
    """Clipped, 300 became 255 (the ignore label) and 0.5 became background."""
    make_folder(tmp_path, count=4, num_classes=3)
    mask = np.zeros((40, 56), values.dtype)
    mask[2:6, 2:6], mask[10:20, 10:20] = 1, values
    (tmp_path / "masks" / "case_001.png").unlink()
    fmt, suffix = ("TIFF", "tif") if values.dtype == np.float32 else ("PNG", "png")
    (tmp_path / "masks" / f"case_001.{suffix}").write_bytes(encode(mask, fmt))
    with pytest.raises(DatasetError, match=f"must hold whole labels 0-255.*holds {shown}"):
        load(f"folder(path={tmp_path},num_classes=3)")


def test_sixteen_bit_images_are_refused_not_whitened(tmp_path):
    make_folder(tmp_path, count=4)
    (tmp_path / "images" / "case_001.jpg").unlink()
    scan = np.full((40, 56), 3000, np.uint16)
    (tmp_path / "images" / "case_001.png").write_bytes(encode(scan, "PNG"))
    with pytest.raises(DatasetError, match="more than 8 bits per pixel.*rescale it to 0-255"):
        load(f"folder:{tmp_path}")


def test_class_value_above_num_classes_is_named(tmp_path):
    make_folder(tmp_path, count=4, num_classes=3)
    bad = np.zeros((40, 56), np.uint8)
    bad[5:9, 5:9] = 7
    (tmp_path / "masks" / "case_002.png").write_bytes(encode(bad, "PNG"))
    with pytest.raises(DatasetError, match=r"values >= num_classes=3 \(e.g. 7 in case_002.png\)"):
        load(f"folder(path={tmp_path},num_classes=3)")


def test_jpeg_masks_refused_for_multiclass(tmp_path):
    make_folder(tmp_path, count=4, mask_format="JPEG")
    with pytest.raises(DatasetError, match="JPEG mask"):
        load(f"folder(path={tmp_path},num_classes=3)")


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "is not a folder"),
        ("no_masks", r"needs images/ and masks/ subfolders \(missing masks/\)"),
        ("empty", "no images in"),
    ],
)
def test_layout_errors(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        (root / "images").mkdir(parents=True)
    if layout == "empty":
        (root / "masks").mkdir()
        (root / "images" / "._case_000.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS litter
    with pytest.raises(DatasetError, match=message):
        load(f"folder:{root}")


def test_duplicate_stems_are_an_error(tmp_path):
    make_folder(tmp_path, count=3)
    (tmp_path / "images" / "case_000.png").write_bytes(encode(np.zeros((4, 4, 3), np.uint8), "PNG"))
    with pytest.raises(DatasetError, match="share a name"):
        load(f"folder:{tmp_path}")


def test_bad_folder_parameters(tmp_path):
    with pytest.raises(ParameterError, match="num_classes"):
        load(f"folder(path={tmp_path},num_classes=1)")
    with pytest.raises(ParameterError, match="val_fraction"):
        load(f"folder(path={tmp_path},val_fraction=0)")
    with pytest.raises(ParameterError, match="leaves nothing to train on"):
        load(f"folder(path={tmp_path},val_fraction=0.5,test_fraction=0.5)")


def test_binary_0_255_masks_read_as_multiclass_are_named(tmp_path):
    make_folder(tmp_path, count=6)  # binary masks stored 0/255
    spec = f"folder(path={tmp_path},num_classes=3)"
    for _ in range(2):  # the second load reads the decoded cache: same error
        with pytest.raises(
            DatasetError, match=r"look binary \(0/255\).*'ignore'.*use num_classes=2"
        ) as error:
            load(spec)
        assert "\n" not in str(error.value)
    assert load(f"folder:{tmp_path}").foreground_fraction("train") > 0  # as binary it loads


def test_training_masks_without_foreground_are_refused(tmp_path):
    make_folder(tmp_path, count=4, num_classes=3, val_count=2)
    ignored = np.zeros((40, 56), np.uint8)
    ignored[:4] = 255  # background and ignore only; val/ keeps its classes
    for mask in (tmp_path / "masks").iterdir():
        mask.write_bytes(encode(ignored, "PNG"))
    with pytest.raises(
        DatasetError, match=r"no foreground pixel of any class 1..2.*255 means 'ignore'"
    ) as error:
        load(f"folder(path={tmp_path},num_classes=3)")
    assert "\n" not in str(error.value)


def test_all_background_binary_masks_are_refused(tmp_path):
    make_folder(tmp_path, count=4)
    for mask in (tmp_path / "masks").iterdir():
        mask.write_bytes(encode(np.zeros((40, 56), np.uint8), "PNG"))
    with pytest.raises(DatasetError, match="no foreground pixel, so every loss would score 0"):
        load(f"folder:{tmp_path}")


@pytest.mark.parametrize(("split", "name"), [("val", "validation"), ("test", "test")])
def test_a_held_out_split_without_foreground_is_refused(tmp_path, split, name):
    """No score on it would mean anything: AP was NaN, Dice 0 beside Dice@thr. 1.000."""
    make_folder(tmp_path, count=6, val_count=2, test_count=2)
    for mask in (tmp_path / split / "masks").iterdir():
        mask.write_bytes(encode(np.zeros((40, 56), np.uint8), "PNG"))
    with pytest.raises(DatasetError, match=f"the {name} masks hold no foreground pixel"):
        load(f"folder:{tmp_path}")


def test_a_pipe_named_like_an_image_is_skipped_not_read(tmp_path):
    """Opening a FIFO blocks until something writes to it: the listing leaves it out."""
    import os

    from losscmp.data.folder import image_files

    make_folder(tmp_path, count=3)
    os.mkfifo(tmp_path / "images" / "zz_pipe.jpg")
    assert sorted(image_files(tmp_path / "images")) == ["case_000", "case_001", "case_002"]


def _colour_masks(root, colours) -> None:
    """Every mask redrawn in RGB: one square of each colour on black."""
    for mask in (root / "masks").iterdir():
        painted = np.zeros((40, 56, 3), np.uint8)
        for row, colour in enumerate(colours):
            painted[4 + 12 * row : 12 + 12 * row, 4:20] = colour
        mask.write_bytes(encode(painted, "PNG"))


@pytest.mark.parametrize(
    ("colours", "merged"),
    [
        ([(128, 0, 0), (0, 128, 0)], "128"),
        ([(255, 0, 0), (0, 255, 0)], "255"),
        ([(1, 0, 0), (0, 1, 0)], "1"),
    ],
    ids=["voc-colours", "pure-colours", "index-colours"],
)
def test_colour_masks_whose_colours_read_as_one_class_are_refused(tmp_path, colours, merged):
    """A colour's label is its brightest channel: red and green of one brightness became one
    label, reported as 'values >= num_classes', as binary 0/255 masks ('use num_classes=2')
    or, red 1 and green 1 as one class 1, not at all."""
    make_folder(tmp_path, count=4, num_classes=3)
    _colour_masks(tmp_path, colours)
    with pytest.raises(DatasetError) as error:
        load(f"folder(path={tmp_path},num_classes=3)")
    message = str(error.value)
    assert re.search(
        rf"case_00\d.png is a colour mask: {re.escape(str(colours[1]))} and "
        rf"{re.escape(str(colours[0]))} both read as label {merged}",
        message,
    ), message
    assert "grey or palette PNG" in message and "0-2" in message and "\n" not in message


def test_a_cache_entry_holding_merged_colours_is_not_read_back(tmp_path, monkeypatch):
    """Decoded before colour masks were refused, red 1 and green 1 were cached as class 1."""
    from losscmp.data import folder, images

    make_folder(tmp_path, count=4, num_classes=3)
    _colour_masks(tmp_path, [(1, 0, 0), (0, 1, 0)])
    spec = f"folder(path={tmp_path},num_classes=3)"
    with monkeypatch.context() as before:
        before.setattr(folder, "DECODING", 2)
        before.setattr(
            folder, "read_label_image", lambda path, upright, **_: images.read_label_image(path)
        )
        assert load(spec).info["cache"] == "written"
    with pytest.raises(DatasetError, match="is a colour mask"):
        load(spec)


def test_colour_masks_whose_colours_stay_apart_are_read_by_their_brightest_channel(tmp_path):
    """A class index kept in one channel (red = 1, red = 2) still reads as that index."""
    make_folder(tmp_path, count=4, num_classes=3)
    _colour_masks(tmp_path, [(1, 0, 0), (2, 0, 0)])
    data = load(f"folder(path={tmp_path},num_classes=3)")
    assert set(np.unique(data.masks("train"))) == {0, 1, 2}


def test_colour_masks_of_a_binary_dataset_are_all_foreground(tmp_path):
    make_folder(tmp_path, count=4)
    _colour_masks(tmp_path, [(255, 0, 0), (0, 255, 0)])
    data = load(f"folder:{tmp_path}", size=56)
    assert data.foreground_fraction("train") == pytest.approx(2 * 8 * 16 / (40 * 56), abs=0.01)


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_split_folder_with_masks_but_no_images_is_refused_not_passed_over(tmp_path, split):
    """val/masks/ alone was passed over: the split was carved from images/ instead."""
    make_folder(tmp_path, count=6)
    (tmp_path / split / "masks").mkdir(parents=True)
    with pytest.raises(DatasetError, match=rf"{split} needs images/ and masks/.*missing images/"):
        load(f"folder:{tmp_path}")


def test_masks_without_a_background_pixel_are_refused(tmp_path):
    """All-white masks (a failed export) trained every loss to say 'foreground' and scored
    Dice 1 everywhere: a comparison that compares nothing."""
    make_folder(tmp_path, count=6)
    for mask in (tmp_path / "masks").iterdir():
        mask.write_bytes(encode(np.full((40, 56), 255, np.uint8), "PNG"))
    with pytest.raises(DatasetError, match="the training masks hold no background pixel"):
        load(f"folder:{tmp_path}")


def test_jfif_images_are_read_as_the_jpegs_they_are(tmp_path):
    """Windows saves a JPEG from the web as .jfif; such images were passed over, and their
    masks refused as having no image."""
    make_folder(tmp_path, count=4)
    for image in (tmp_path / "images").glob("*.jpg"):
        image.rename(image.with_suffix(".jfif"))
    data = load(f"folder:{tmp_path}")
    assert sum(data.size(split) for split in ("train", "val", "test")) == 4


def test_files_of_a_type_not_read_are_named_where_their_partner_is_missing(tmp_path):
    """'1 mask(s) have no image: case_002.png' while images/ holds case_002.heic."""
    make_folder(tmp_path, count=5)
    (tmp_path / "images" / "case_002.jpg").rename(tmp_path / "images" / "case_002.heic")
    with pytest.raises(DatasetError) as error:
        load(f"folder:{tmp_path}")
    assert str(error.value).endswith(
        "have no image: case_002.png (case_002.heic in images/ not read: losscmp reads .bmp, "
        ".gif, .jfif, .jpe, .jpeg, .jpg, .png, .tif, .tiff, .webp files)"
    )


def test_a_folder_of_files_of_a_type_not_read_says_so(tmp_path):
    make_folder(tmp_path, count=4)
    for image in (tmp_path / "images").glob("*.jpg"):
        image.rename(image.with_suffix(".heic"))
    (tmp_path / "images" / "Thumbs.db").write_bytes(b"x")
    with pytest.raises(
        DatasetError,
        match=r"no images in .*images \(Thumbs.db, case_000.heic, case_001.heic and 2 more in "
        r"images/ not read: losscmp reads .bmp, .gif",
    ):
        load(f"folder:{tmp_path}")


def test_a_picture_of_many_megapixels_is_read_without_pillows_bomb_warning(
    tmp_path, recwarn, monkeypatch
):
    """Over 89 megapixels (a drone or slide scan) Pillow warned 'could be decompression bomb
    DOS attack' as raw Python lines, four per pair, amid the progress display."""
    make_folder(tmp_path, count=4)  # 56x40 = 2240 pixels: above the limit, below twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(tmp_path / "masks" / "case_000.png")
    recwarn.clear()
    assert load(f"folder:{tmp_path}").size("train") == 2
    bombs = [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    assert bombs == []


def test_large_pictures_are_decoded_only_as_many_at_once_as_fit(tmp_path, monkeypatch):
    """One thread per core (eight at most) decoded at once whatever the pictures' size:
    tens of megapixels each could take gigabytes beyond the decoded dataset (killed for
    memory, no message). As many as fit side by side now, one at least."""
    from losscmp.data import folder, images, memory

    make_folder(tmp_path, count=4)  # 56x40 pixels: 2240 * 8 bytes each while decoded
    used = []

    def recording(*args, workers=None, **kwargs):
        used.append(workers)
        return images.decode_pairs(*args, workers=workers, **kwargs)

    monkeypatch.setattr(folder, "decode_pairs", recording)
    monkeypatch.setattr(folder, "decoder_threads", lambda: 8)
    monkeypatch.setattr(memory, "available_memory", lambda: 5 * 2240 * 8 + 100)
    assert load(f"folder:{tmp_path}").info["cache"] == "written"
    assert used == [5]
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * 2**30)
    assert memory.decoders_that_fit(100_000_000, most=8) == 2
    assert memory.decoders_that_fit(10**12, most=8) == 1


def test_a_file_that_cannot_be_opened_is_named_as_such_not_as_no_image(tmp_path, monkeypatch):
    """A file this user may not read (copied from another's 0600 files) was 'not an image'."""
    from losscmp.data import folder

    make_folder(tmp_path, count=4)
    locked = tmp_path / "masks" / "case_002.png"

    def open_image(path):
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return images_open_image(path)

    images_open_image = folder.open_image
    monkeypatch.setattr(folder, "open_image", open_image)
    with pytest.raises(DatasetError, match=f"cannot read {re.escape(str(locked))} \\(Permission"):
        load(f"folder:{tmp_path}")


def test_a_palette_image_with_a_transparency_table_is_read_without_pillows_warning(
    tmp_path, recwarn
):
    """Pillow warned 'Palette images with Transparency expressed in bytes should be
    converted to RGBA images' as a raw Python line for each such PNG (a tRNS chunk)."""
    make_folder(tmp_path, count=4)
    photo = tmp_path / "images" / "case_001.jpg"
    palette = Image.open(photo).convert("P")
    photo.unlink()
    png = tmp_path / "images" / "case_001.png"
    palette.save(png, transparency=bytes([0, 128] + [255] * 254))
    expected = np.asarray(Image.open(png).convert("RGB").resize((32, 32), Image.BILINEAR))
    recwarn.clear()
    data = load(f"folder:{tmp_path}")
    assert _user_warnings(recwarn) == []
    split = next(s for s in ("train", "val", "test") if "case_001" in data.names(s))
    row = data.names(split).index("case_001")
    np.testing.assert_array_equal(data.images(split)[row], expected)


def _with_a_large_text_chunk(path, pixels):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    Image.fromarray(pixels).save(path, pnginfo=info)


def test_a_png_whose_metadata_pillow_refuses_is_named_not_a_traceback(tmp_path):
    """A compressed text chunk over Pillow's 1 MB limit raised its ValueError through the
    whole run: a traceback instead of the file's name."""
    make_folder(tmp_path, count=4)
    photo = tmp_path / "images" / "case_002.jpg"
    png = tmp_path / "images" / "case_002.png"
    _with_a_large_text_chunk(png, np.asarray(Image.open(photo)))
    photo.unlink()
    with pytest.raises(DatasetError, match=f"Pillow refuses {re.escape(str(png))} .*metadata"):
        load(f"folder:{tmp_path}")


def test_a_file_pillow_refuses_while_decoding_is_unreadable_not_a_traceback(tmp_path):
    from losscmp.data.images import UnreadableFile, read_label_image, read_rgb

    png = tmp_path / "x.png"
    _with_a_large_text_chunk(png, np.zeros((8, 8), np.uint8))
    for read in (lambda: read_rgb(png, 16), lambda: read_label_image(png)):
        # Pillow 10.0 said "Decompressed Data Too Large"; later ones name MAX_TEXT_CHUNK
        with pytest.raises(UnreadableFile, match="MAX_TEXT_CHUNK|Decompressed Data Too Large"):
            read()
