"""Data sets on disk: image files + label-id mask files, in any layout.

``FileSegmentationDataset`` reads one split given as (image, mask) path pairs and follows
the alseg sample contract (docs/design.md). The layouts (Cityscapes, GTA5, VOC, plain
folders) only differ in how they list the pairs and map raw mask values to class ids;
they live in ``alseg.data.layouts``. Checks that are cheap run when a split is opened
(empty split, missing mask, image/mask size mismatch, read from the file headers); each
mask is checked for values outside the classes when it is read, and ``alseg data check``
reads everything. Every error names the offending file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class DataError(ValueError):
    """A data set file or layout is wrong; the message names the file and what is valid."""


@dataclass(frozen=True)
class ClassInfo:
    """Classes of a data set.

    Attributes:
        names: one name per class id 0..C-1.
        palette: one RGB colour per class (for overlays).
        ignore_index: the void label of ``mask``.
        lut: raw mask value -> class id (or ``ignore_index``); -1 marks a value that is not
            valid in this data set. None: raw values are class ids already.
        colour_coded: masks are colour images (RGB, RGBA or palette; alpha ignored) whose
            pixel colour is its class's ``palette`` entry (LabelMeFacade), not class ids.
    """

    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    lut: np.ndarray | None = None
    colour_coded: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.names)


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map (bit-interleaved), one RGB colour per class id."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


Fit = Literal["stretch", "crop"]
FITS: tuple[str, ...] = ("stretch", "crop")


def parse_size(
    size: int | Sequence[int] | None, fit: str = "stretch"
) -> tuple[str, tuple[int, int]] | None:
    """``image_size``: None (native), an int (shorter side, aspect kept) or [height, width],
    reached as ``fit`` says: ``stretch`` (resize to it, the aspect changes) or ``crop``
    (resize to cover it, aspect kept, then cut its centre out)."""
    if fit not in FITS:
        raise DataError(f"data.resize={fit!r} is not valid; choose one of: {', '.join(FITS)}")
    if size is None:
        return None
    if isinstance(size, int):
        if size < 8:
            raise DataError(f"data.image_size={size} must be >= 8")
        return ("short", (size, size))
    hw = tuple(int(v) for v in size)
    if len(hw) != 2 or min(hw) < 8:
        raise DataError(f"data.image_size={list(size)} must be an int or [height, width] >= 8")
    return ("crop" if fit == "crop" else "exact", (hw[0], hw[1]))


def _scaled_size(
    native: tuple[int, int], size: tuple[str, tuple[int, int]] | None
) -> tuple[int, int]:
    """(height, width) an image of (height, width) ``native`` is resized to, before any
    crop."""
    if size is None:
        return native
    kind, (h, w) = size
    if kind == "exact":
        return (h, w)
    H, W = native
    s = h / min(H, W) if kind == "short" else max(h / H, w / W)
    # never below the crop, whatever the rounding
    return (
        max(round(H * s), h if kind == "crop" else 1),
        max(round(W * s), w if kind == "crop" else 1),
    )


def _target_size(
    native: tuple[int, int], size: tuple[str, tuple[int, int]] | None
) -> tuple[int, int]:
    """(height, width) after resizing (and cropping) an image of (height, width) ``native``."""
    if size is not None and size[0] == "crop":
        return size[1]
    return _scaled_size(native, size)


def fit_image(
    im: Image.Image, size: tuple[str, tuple[int, int]] | None, resample: Image.Resampling
) -> Image.Image:
    """``im`` resized as ``size`` (of ``parse_size``) says, with its centre cut out for
    ``crop``."""
    native = (im.height, im.width)
    scaled = _scaled_size(native, size)
    if scaled != native:
        im = im.resize((scaled[1], scaled[0]), resample)
    target = _target_size(native, size)
    if target != scaled:
        top, left = (scaled[0] - target[0]) // 2, (scaled[1] - target[1]) // 2
        im = im.crop((left, top, left + target[1], top + target[0]))
    return im


def _open(path: Path, decode: bool = True) -> Image.Image:
    """The image at ``path`` (pixels decoded unless ``decode=False``: header only); a
    missing or broken file raises DataError naming it."""
    try:
        im = Image.open(path)
        if decode:
            im.load()
        return im
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as e:  # PIL raises several types for broken files
        raise DataError(f"{path}: unreadable image file ({type(e).__name__}: {e})") from None


def _header_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    with _open(path, decode=False) as im:
        return im.size[1], im.size[0]


def read_sbd_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An SBD class annotation (``cls/*.mat``, struct ``GTcls``): the (H, W) class map
    (``Segmentation``, 0 = background) and the (K, H, W) bool boundaries of object classes
    1..K (``Boundaries``, one sparse matrix per class)."""
    from scipy.io import loadmat

    try:
        gt = loadmat(str(path))["GTcls"][0, 0]
        seg = np.asarray(gt["Segmentation"])
        cells = np.asarray(gt["Boundaries"], dtype=object).ravel()
        bounds = np.stack([np.asarray(c.toarray(), dtype=bool) for c in cells])
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as e:  # scipy raises several types for broken files
        raise DataError(
            f"{path}: not an SBD class annotation (a .mat with struct GTcls holding "
            f"Segmentation and Boundaries): {type(e).__name__}: {e}"
        ) from None
    if seg.ndim != 2 or bounds.shape[1:] != seg.shape:
        raise DataError(
            f"{path}: Segmentation {seg.shape} and Boundaries {bounds.shape[1:]} differ in size"
        )
    return seg, bounds


def _fit_nearest(a: np.ndarray, size: tuple[str, tuple[int, int]] | None) -> np.ndarray:
    """(H, W) label array resized (and cropped) as ``size`` says, with nearest neighbour."""
    if size is None:
        return a
    im = fit_image(
        Image.fromarray(a.astype(np.uint8) if a.dtype == bool else a),
        size,
        Image.Resampling.NEAREST,
    )
    out = np.array(im)
    return out.astype(bool) if a.dtype == bool else out


class FileSegmentationDataset(Dataset):
    """One split of a segmentation data set stored as image + mask files.

    Args:
        pairs: (image path, mask path) per sample, in a fixed order.
        classes: names, palette, ignore index and raw-value mapping.
        name: data set name (fingerprints, messages).
        split: split name (messages).
        image_size: None, shorter side (int), or [height, width]: resize on load (CPU runs).
        fit: how [height, width] is reached: ``stretch`` (resize) or ``crop`` (resize to
            cover, aspect kept, then the centre).
        strict: raise at the first file problem found when the split opens; False
            (``alseg data check``): note each in ``problems`` and leave its pair out.
        cache: keep every decoded (resized) image and mask in memory after its first read:
            for downsized data sets read many times (a pool scored every round), with
            ``num_workers=0`` (a loader worker's cache is lost when the worker ends).
        domain: sample ``domain`` field.
        check_sizes: compare image and mask sizes from the file headers now.

    Items: ``{"image": (3,H,W) float in [0,1], "mask": (H,W) long, "index", "domain"}``.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        classes: ClassInfo,
        name: str,
        split: str,
        image_size: int | Sequence[int] | None = None,
        domain: str = "target",
        check_sizes: bool = True,
        fit: Fit = "stretch",
        cache: bool = False,
        strict: bool = True,
    ) -> None:
        if not pairs:
            raise DataError(f"{name}: split {split!r} is empty (no image/mask pairs found)")
        self.classes, self.name, self.split, self.domain = classes, name, split, domain
        self._size = parse_size(image_size, fit)
        self._cache: dict[tuple[str, int], np.ndarray] | None = {} if cache else None
        self.problems: list[str] = []  # strict=False: the pairs left out, and why
        # (height, width) of every image as loaded (after resizing); None unless checked
        self.image_sizes: list[tuple[int, int]] | None = [] if check_sizes else None
        self.pairs: list[tuple[Path, Path]] = []
        for a, b in pairs:
            try:
                size = self._check_pair(Path(a), Path(b), check_sizes)
            except DataError as e:
                if strict:
                    raise
                self.problems.append(str(e))
                continue
            self.pairs.append((Path(a), Path(b)))
            if self.image_sizes is not None and size is not None:
                self.image_sizes.append(size)

    def _check_pair(self, image: Path, mask: Path, sizes: bool) -> tuple[int, int] | None:
        """The mask exists and (``sizes``) has the image's size in the file headers; the
        size of the image as loaded."""
        if not mask.is_file():
            raise DataError(f"{image}: its mask {mask} is missing")
        if not sizes:
            return None
        a = _header_size(image)
        b = a if mask.suffix == ".mat" else _header_size(mask)  # .mat: when read
        if a != b:
            raise DataError(
                f"{mask}: mask size {b[1]}x{b[0]} differs from image {image} "
                f"size {a[1]}x{a[0]} (width x height)"
            )
        return _target_size(a, self._size)

    # --- the sample contract -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes.names

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.classes.palette

    @property
    def ignore_index(self) -> int:
        return self.classes.ignore_index

    @property
    def fingerprint(self) -> str:
        """Identifies the files (names and byte sizes) and the resize of this split."""
        h = hashlib.sha1()
        for a, b in self.pairs:
            h.update(f"{a.name}:{a.stat().st_size}:{b.name}:{b.stat().st_size};".encode())
        size = "native" if self._size is None else f"{self._size[0]}{self._size[1]}"
        return f"{self.name}-{self.split}-n{len(self)}-{size}-{h.hexdigest()[:12]}"

    def __len__(self) -> int:
        return len(self.pairs)

    def _cached(self, kind: str, index: int, read: Callable[[int], np.ndarray]) -> np.ndarray:
        """``read(index)``, from memory after the first time when caching (a copy)."""
        if self._cache is None:
            return read(index)
        key = (kind, index)
        if key not in self._cache:
            self._cache[key] = read(index)
        return self._cache[key].copy()

    def image_uint8(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 image (resized if configured)."""
        return self._cached("image", index, self._read_image)

    def _read_image(self, index: int) -> np.ndarray:
        path = self.pairs[index][0]
        im = fit_image(_open(path).convert("RGB"), self._size, Image.Resampling.BILINEAR)
        return np.array(im, dtype=np.uint8)

    def raw_mask(self, index: int) -> np.ndarray:
        """(H, W) raw mask values as stored (resized with nearest neighbour if configured);
        class ids for colour-coded masks."""
        path = self.pairs[index][1]
        if path.suffix == ".mat":
            return _fit_nearest(read_sbd_mat(path)[0], self._size)
        im = _open(path)
        if self.classes.colour_coded:
            ids = decode_colours(im, self.classes, path, self.name)
            return _fit_nearest(ids, self._size)
        if im.mode in ("RGB", "RGBA"):
            raise DataError(
                f"{path}: mask is a colour ({im.mode}) image; masks must hold one class id "
                "per pixel (8/16-bit grey or palette PNG)"
            )
        return np.array(fit_image(im, self._size, Image.Resampling.NEAREST))

    def class_boundaries(self, index: int) -> np.ndarray | None:
        """(C, H, W) bool ground-truth boundaries of each class where the data set has its
        own (SBD's ``Boundaries``; class 0, the background, has none), else None."""
        path = self.pairs[index][1]
        if path.suffix != ".mat":
            return None
        seg, bounds = read_sbd_mat(path)
        out = np.zeros((self.num_classes, *_target_size(seg.shape, self._size)), dtype=bool)
        for k in range(min(len(bounds), self.num_classes - 1)):
            out[k + 1] = _fit_nearest(bounds[k], self._size)
        return out

    def mask(self, index: int) -> torch.Tensor:
        """(H, W) long class ids, ``ignore_index`` for void; raises on invalid values."""
        return torch.from_numpy(self._cached("mask", index, self._read_mask).astype(np.int64))

    def _read_mask(self, index: int) -> np.ndarray:
        raw = self.raw_mask(index).astype(np.int64)
        lut, ignore, C = self.classes.lut, self.ignore_index, self.num_classes
        if lut is not None:
            bad = (raw < 0) | (raw >= len(lut))
            mapped = np.where(bad, -1, lut[np.clip(raw, 0, len(lut) - 1)])
        else:
            mapped = raw
        invalid = (mapped < 0) | ((mapped >= C) & (mapped != ignore))
        if invalid.any():
            values = np.unique(raw[invalid])[:8].tolist()
            raise DataError(
                f"{self.pairs[index][1]}: label values {values} are not valid for {self.name} "
                f"(valid: class ids 0..{C - 1} after mapping, and ignore {ignore})"
            )
        return mapped.astype(np.int32)  # compact in the cache

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(self.image_uint8(index)).permute(2, 0, 1).float() / 255.0
        mask = self.mask(index)
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise DataError(
                f"{self.pairs[index][1]}: mask size {tuple(mask.shape)} differs from image "
                f"{self.pairs[index][0]} size {tuple(image.shape[-2:])} (height, width)"
            )
        return {"image": image, "mask": mask, "index": index, "domain": self.domain}


def decode_colours(im: Image.Image, classes: ClassInfo, path: Path, name: str) -> np.ndarray:
    """(H, W) uint8 class ids of a colour-coded mask (the colour of class c is
    ``classes.palette[c]``; alpha ignored). A colour outside the table raises DataError
    naming the file, the first such pixel and its colour, and the valid colours."""
    if im.mode not in ("RGB", "RGBA", "P"):
        raise DataError(
            f"{path}: mask mode {im.mode}; {name} labels are colour-coded (RGB, RGBA or palette)"
        )
    rgb = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8)
    code |= rgb[..., 2]  # (H, W)
    ids = np.zeros(code.shape, dtype=np.uint8)
    known = np.zeros(code.shape, dtype=bool)
    for c, (r, g, b) in enumerate(classes.palette):  # a few classes: one pass each
        hit = code == ((r << 16) | (g << 8) | b)
        ids[hit] = c
        known |= hit
    if not known.all():
        y, x = (int(v[0]) for v in np.nonzero(~known))
        valid = ", ".join(
            f"{n} {r}:{g}:{b}" for n, (r, g, b) in zip(classes.names, classes.palette)
        )
        raise DataError(
            f"{path}: pixel (x={x}, y={y}) has colour {':'.join(map(str, rgb[y, x]))} (R:G:B), "
            f"which is no {name} class ({int((~known).sum())} such pixels); valid: {valid}"
        )
    return ids


def find_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_list(path: Path, root: Path, columns: int) -> list[list[Path]]:
    """Rows of a list file (whitespace-separated paths relative to ``root``; # comments)."""
    if not path.is_file():
        raise DataError(f"list file {path} not found")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != columns:
            raise DataError(
                f"{path}, line {n}: expected {columns} path(s) per line, got {len(parts)}: {line!r}"
            )
        rows.append([root / p.lstrip("/") for p in parts])
    return rows
