"""Oxford-IIIT Pet, read from the official layout as the two archives extract.

    <data_dir>/images/<id>.jpg
    <data_dir>/annotations/trimaps/<id>.png      1 = pet, 2 = background, 3 = border band
    <data_dir>/annotations/trainval.txt, test.txt  lines "Image CLASS-ID SPECIES BREED-ID"

Splits: test is the official test list (reported); validation a fixed
``val_fraction`` of trainval chosen by hash of the id (it picks epochs,
thresholds and learning rates); training the rest of trainval.

Only ids named in the lists are read, so the .mat files in images/, macOS
"._*" files in annotations/ and images in neither list are ignored (and
counted in ``info``). Files that are GIF or PNG under a .jpg name, RGBA or grey
images and truncated JPEGs are decoded anyway (see images.py); a file that
cannot be read at all is skipped. Both are named in ``info`` (so in run.json),
and ``report`` repeats them under the table: the official download is checked
by sha256, so such files are the dataset's own, kept as the benchmark has them.
(A folder dataset, the user's own data, refuses them instead: losscmp.data.folder.)
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from losscmp.data import cache
from losscmp.data.base import IGNORE_INDEX, LoadContext, SegmentationData, describe
from losscmp.data.images import decode_pairs, read_label_image
from losscmp.data.memory import check_dataset_fits
from losscmp.errors import DatasetError, ParameterError

DEFAULT_PETS_DIR = Path("datasets/oxford-iiit-pet")
DOWNLOAD_COMMAND = "losscmp datasets download pets"
PET, BACKGROUND, BORDER = 1, 2, 3  # trimap values
REQUIRED = ("images", "annotations/trimaps", "annotations/trainval.txt", "annotations/test.txt")
SAMPLE_LIMIT = 5  # how many problem files info lists by name


def pets_mode(*, mode: str = "binary", **_: object) -> str:
    """``trimap`` is three classes: background, pet, border."""
    return "binary" if mode == "binary" else "multiclass"


def load_pets(
    *,
    mode: Literal["binary", "trimap"] = "binary",
    border: Literal["ignore", "fg", "bg"] = "ignore",
    val_fraction: float = 0.1,
    **context: Any,
) -> SegmentationData:
    """Pets: binary pet vs background (border band ignored, or counted as fg/bg), or trimap.

    Train on trainval less a fixed ``val_fraction`` of it (the validation split, which
    chooses epochs, thresholds and learning rates); test on the official test list.
    """
    ctx = LoadContext(**context)
    root = precheck_pets(
        mode=mode,
        border=border,
        val_fraction=val_fraction,
        data_dir=ctx.data_dir,
        image_size=ctx.image_size,
        limit=ctx.limit,
    )
    pools = read_pools(root)
    train_ids, val_ids, test_ids = choose_ids(pools, ctx.limit, val_fraction)
    check_dataset_fits(
        f"Oxford-IIIT Pet in {root}",
        len(train_ids) + len(val_ids) + len(test_ids),
        ctx.image_size,
        "lower --limit or --image-size",
        copies=2,
    )
    started = time.perf_counter()
    # What chose the ids, as a folder dataset's lineage (see decoded_trimaps): val_fraction
    # only with a limit (it splits the limit between trainval and test).
    choice = (ctx.limit, val_fraction if ctx.limit is not None else None)
    every_id = train_ids + val_ids + test_ids
    arrays, cached = decoded_trimaps(root, every_id, ctx.image_size, choice)
    kept_ids = [str(name) for name in arrays["ids"]]
    masks = trimap_to_masks(arrays["trimaps"], mode, border)
    where = {
        split: np.isin(kept_ids, ids)
        for split, ids in (("train", train_ids), ("val", val_ids), ("test", test_ids))
    }

    def names(split: str) -> tuple[str, ...]:
        return tuple(name for name, kept in zip(kept_ids, where[split], strict=True) if kept)

    data = SegmentationData(
        name="pets",
        spec="",
        mode=pets_mode(mode=mode),
        class_names=("background", "pet") if mode == "binary" else ("background", "pet", "border"),
        train_images=arrays["images"][where["train"]],
        train_masks=masks[where["train"]],
        val_images=arrays["images"][where["val"]],
        val_masks=masks[where["val"]],
        test_images=arrays["images"][where["test"]],
        test_masks=masks[where["test"]],
        ignore_index=IGNORE_INDEX if (masks == IGNORE_INDEX).any() else None,
        train_names=names("train"),
        val_names=names("val"),
        test_names=names("test"),
    )
    if not all(data.size(split) for split in ("train", "val", "test")):
        raise DatasetError(f"Oxford-IIIT Pet in {root}: no readable images left in a split")
    data.info = describe(
        data,
        source=str(root),
        validation=f"{val_fraction:g} of trainval",
        test="the official test list",
        border=border if mode == "binary" else "class",
        **cached.info(),
        load_seconds=round(time.perf_counter() - started, 3),
        unlisted_images=pools["unlisted"],
        missing_files=[relative(root, p) for p in pools["missing"][:SAMPLE_LIMIT]],
        missing_file_count=len(pools["missing"]),
        truncated=[str(p) for p in arrays["truncated"]][:SAMPLE_LIMIT],
        truncated_count=len(arrays["truncated"]),
        unreadable=[str(p) for p in arrays["unreadable"]][:SAMPLE_LIMIT],
        unreadable_count=len(arrays["unreadable"]),
        skipped_ids=len(train_ids) + len(val_ids) + len(test_ids) - len(kept_ids),
    )
    return data


def precheck_pets(
    *,
    mode: str = "binary",
    border: str = "ignore",
    val_fraction: float = 0.1,
    data_dir: Path | None,
    image_size: int,
    limit: int | None,
    **_: Any,
) -> Path:
    """Every check short of decoding (parameters, layout, a memory estimate from the
    lists' lengths); returns the pets folder."""
    if not 0.0 < val_fraction < 1.0:
        raise ParameterError(f"dataset 'pets': val_fraction={val_fraction} must be in (0, 1)")
    if mode == "trimap" and border != "ignore":
        raise ParameterError("dataset 'pets': border applies to mode=binary only")
    root = resolve_root(data_dir)
    check_layout(root, data_dir)
    try:
        listed = len(read_list(root / "annotations/trainval.txt"))
        listed += len(read_list(root / "annotations/test.txt"))
    except OSError as error:
        raise DatasetError(
            f"Oxford-IIIT Pet in {root}: cannot read its lists ({error.strerror or error})"
        ) from None
    check_dataset_fits(
        f"Oxford-IIIT Pet in {root}",
        min(listed, limit) if limit is not None else listed,
        image_size,
        "lower --limit or --image-size",
        copies=2,  # decoded arrays, then the kept ones
    )
    return root


# The download's own folder for its archives (kept while a download is unfinished).
DOWNLOADS_DIR = ".downloads"
# What makes a --root the pets folder itself: its annotations, or an unfinished download
# into it, which must be finished there, not started again in <root>/oxford-iiit-pet.
PETS_OWN = ("annotations", DOWNLOADS_DIR)


def resolve_root(data_dir: Path | None) -> Path:
    """The pets folder: data_dir itself, or data_dir/oxford-iiit-pet if that holds the data."""
    root = Path(data_dir) if data_dir is not None else DEFAULT_PETS_DIR
    nested = root / DEFAULT_PETS_DIR.name
    if not (root / "images").is_dir() and (nested / "images").is_dir():
        return nested
    return root


def download_hint(data_dir: Path | None) -> str:
    if data_dir is None or Path(data_dir) == DEFAULT_PETS_DIR:
        return DOWNLOAD_COMMAND
    return f"{DOWNLOAD_COMMAND} --data-dir {data_dir}"


def missing_parts(root: Path) -> list[str]:
    return [part for part in REQUIRED if not (root / part).exists()]


def check_layout(root: Path, data_dir: Path | None) -> None:
    if root.exists() and not root.is_dir():  # the download cannot make a folder there
        raise DatasetError(
            f"--data-dir {root} is a file, not a folder: give the folder Oxford-IIIT Pet was "
            f"downloaded into ({DOWNLOAD_COMMAND} makes it)"
        )
    missing = missing_parts(root)
    if missing:
        what = "nothing there" if not root.exists() else "missing " + ", ".join(missing)
        hint = download_hint(data_dir)
        raise DatasetError(f"Oxford-IIIT Pet not found in {root} ({what}); fetch it with: {hint}")


def read_list(path: Path) -> list[str]:
    """Image ids from a list file: the first word of each line; comments and blanks skipped."""
    ids = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            ids.append(words[0])
    return ids


def image_path(root: Path, image_id: str) -> Path:
    return root / "images" / f"{image_id}.jpg"


def trimap_path(root: Path, image_id: str) -> Path:
    return root / "annotations" / "trimaps" / f"{image_id}.png"


def read_pools(root: Path) -> dict[str, Any]:
    """trainval and test ids whose image and trimap both exist; what is missing or unlisted."""
    listed = {"trainval": read_list(root / "annotations/trainval.txt")}
    listed["test"] = read_list(root / "annotations/test.txt")
    on_disk = {
        path.stem for path in (root / "images").glob("*.jpg") if not path.name.startswith("._")
    }
    pools: dict[str, Any] = {
        "missing": [],
        "unlisted": len(on_disk - set().union(*listed.values())),
    }
    for name, ids in listed.items():
        present = []
        for image_id in dict.fromkeys(ids):  # a repeated line counts once
            missing = [
                p
                for p in (image_path(root, image_id), trimap_path(root, image_id))
                if not p.is_file()
            ]
            pools["missing"].extend(str(p) for p in missing)
            if not missing:
                present.append(image_id)
        pools[name] = present
    # An id in both lists belongs to test: training on it would leak into the evaluation.
    test = set(pools["test"])
    pools["trainval"] = [image_id for image_id in pools["trainval"] if image_id not in test]
    return pools


def stable_order(ids: list[str]) -> list[str]:
    """A fixed pseudo-random order: by hash of the id, so it does not depend on the seed,
    and adding or losing a file does not reshuffle the others."""
    return sorted(ids, key=lambda image_id: hashlib.sha1(image_id.encode()).hexdigest())


def choose_ids(
    pools: dict[str, Any], limit: int | None, val_fraction: float
) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) ids: val a fixed ``val_fraction`` of trainval, test the official list.

    ``limit`` caps the three together: test keeps ``val_fraction`` of it (at least one),
    trainval the rest, split as without a limit.
    """
    trainval = stable_order(pools["trainval"])
    test = stable_order(pools["test"])
    if limit is not None:
        test = test[: max(1, round(limit * val_fraction))]
        trainval = trainval[: max(2, limit - len(test))]
    val_count = max(1, round(len(trainval) * val_fraction))
    return trainval[val_count:], trainval[:val_count], test


def decoded_trimaps(
    root: Path, ids: list[str], size: int, choice: tuple[object, ...]
) -> tuple[dict[str, np.ndarray], cache.CacheUse]:
    """Resized images and raw trimaps for ``ids``, from the cache when it is current.

    The ids are those of the lists whose files are present: a download completed later
    (``datasets`` calls a tree with files missing incomplete) or a file deleted changes
    them, so the entry's family, as an added file does a folder dataset's. Its lineage
    (the options that chose the ids, ``choice``) lets the new entry delete the one it
    outdates, which no load reads again (2 GB at 256 px)."""
    pairs = [(image_path(root, i), trimap_path(root, i)) for i in ids]
    files = [path for pair in pairs for path in pair]
    places = cache.entry_places(root, cache.cache_entry(root, f"pets-{size}px", files))
    found = cache.load_first(places, ("ids", "images", "trimaps", "truncated", "unreadable"))
    if found is not None:
        return found
    decoded = decode_pairs(pairs, size, read_label_image)
    arrays = {
        "ids": np.array([ids[p] for p in decoded.kept], dtype=str),
        "images": decoded.images,
        "trimaps": decoded.masks,
        "truncated": np.array([relative(root, p) for p in decoded.truncated], dtype=str),
        "unreadable": np.array([relative(root, p) for p in decoded.unreadable], dtype=str),
    }
    return arrays, cache.save_first(places, arrays, lineage=("pets", *choice))


def relative(root: Path, path: str | Path) -> str:
    return str(Path(path).relative_to(root))


def trimap_to_masks(trimaps: np.ndarray, mode: str, border: str) -> np.ndarray:
    """Trimap values -> class indices; any value other than 1, 2, 3 becomes ignored."""
    lookup = np.full(256, IGNORE_INDEX, np.uint8)
    if mode == "trimap":
        lookup[[BACKGROUND, PET, BORDER]] = [0, 1, 2]
    else:
        lookup[[BACKGROUND, PET]] = [0, 1]
        lookup[BORDER] = {"ignore": IGNORE_INDEX, "fg": 1, "bg": 0}[border]
    return lookup[trimaps]


def pets_status(datasets_root: Path) -> dict[str, Any]:
    """The ``datasets list`` row fields for the pets folder under ``datasets_root``, or
    ``datasets_root`` itself when it is one (the --data-dir a download or a run was given):
    a tree whose lists name files it lacks is present (it loads without them) but said to be
    incomplete."""
    root = resolve_root(datasets_root / DEFAULT_PETS_DIR.name)
    if missing_parts(root) and any((datasets_root / part).is_dir() for part in PETS_OWN):
        root = datasets_root
    if missing_parts(root):
        return {"present": False, "path": str(root), "how_to_get": download_hint(root)}
    try:
        absent = read_pools(root)["missing"]
    except OSError:
        absent = []  # unreadable lists: loading names the problem
    how = "downloaded"
    if absent:
        how = (
            f"incomplete: {len(absent)} listed file(s) missing (e.g. {relative(root, absent[0])}),"
            f" left out when loading; to get them, remove {root / 'images'} and "
            f"{root / 'annotations'}, then run: {download_hint(root)}"
        )
    return {"present": True, "path": str(root), "how_to_get": how}


def download_pets_into(dest: Path, **options: Any) -> Path:
    """``losscmp datasets download pets``: fetch, verify and extract into ``dest`` (or the
    pets folder in it: see download_folder)."""
    from losscmp.data.download import download_pets  # it imports this module

    return download_pets(download_folder(dest), **options)


def download_folder(dest: Path) -> Path:
    """``dest``, or ``dest/oxford-iiit-pet`` when that holds pets (whole, or a download
    under way) and ``dest`` holds none of its own: the folder a run's ``--data-dir dest``
    and ``datasets list --root dest`` read, rather than a second copy beside it."""
    nested = dest / DEFAULT_PETS_DIR.name

    def holds_pets(folder: Path) -> bool:
        return any((folder / part).exists() for part in ("images", *PETS_OWN))

    return nested if holds_pets(nested) and not holds_pets(dest) else dest
