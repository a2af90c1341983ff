"""Visual Genome scene-graph loader.

Reads the three standard VG v1.4 files -- ``objects.json``, ``relationships.json`` and ``image_data.json`` -- into
plain dataclasses. Every structural problem is a one-line :class:`VGFormatError` naming the file, the entry index,
the image id and the offending field; nothing is silently dropped:

- a box that extends outside its image is clipped to the image, with a warning naming the entry;
- a box with zero area (after clipping) is dropped, with a warning naming the entry; relationships that use it are
  dropped with a warning too;
- the same object id listed twice for one image in ``objects.json`` is an error naming the image id and object id
  (relationship endpoints that repeat an object of ``objects.json`` are the normal VG layout, not duplicates).

Images are checked by :func:`read_image` (open, verify and fully decode); the dataset builder calls it.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)

IMAGE_DIRS = ("images", "VG_100K", "VG_100K_2")
"""Image folders looked for under a VG root, in this order."""
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""File extensions tried for ``<image_id><ext>``."""


class VGFormatError(ValueError):
    """Input files do not follow the Visual Genome format (the message names the file, entry and field)."""


class ImageFileError(VGFormatError):
    """An image file cannot be opened or decoded (the message names the file and the image id)."""


@dataclass
class VGObject:
    """One annotated object: a name and a pixel box."""

    object_id: int
    """VG object id (unique within its image)."""
    name: str
    """Lower-cased object name with single spaces (the first of VG's ``names``)."""
    x: float
    """Left edge in pixels."""
    y: float
    """Top edge in pixels."""
    w: float
    """Width in pixels (> 0 after loading)."""
    h: float
    """Height in pixels (> 0 after loading)."""
    synsets: list[str] = field(default_factory=list)
    """WordNet synsets as given by VG (unused by the generator)."""

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Pixel corners ``(x1, y1, x2, y2)``."""
        return (self.x, self.y, self.x + self.w, self.y + self.h)

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(cx, cy)``."""
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return self.w * self.h


@dataclass
class VGRelation:
    """One scene-graph edge ``subject --predicate--> object``."""

    relationship_id: int
    """VG relationship id (the entry index when VG gives none)."""
    predicate: str
    """Lower-cased predicate with single spaces, as VG writes it."""
    subject_id: int
    """Object id of the subject."""
    object_id: int
    """Object id of the object."""


@dataclass
class VGImage:
    """One image's scene graph."""

    image_id: int
    """VG image id."""
    width: int
    """Image width in pixels as listed in ``image_data.json``."""
    height: int
    """Image height in pixels as listed in ``image_data.json``."""
    image_path: str | None
    """Path of the image file, or None when it was not found (only with ``require_images=False``)."""
    objects: dict[int, VGObject] = field(default_factory=dict)
    """Objects by object id, in file order."""
    relations: list[VGRelation] = field(default_factory=list)
    """Relationships whose two ends are both in ``objects``."""

    def names(self) -> list[str]:
        """Object names in file order."""
        return [o.name for o in self.objects.values()]


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"Visual Genome file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise VGFormatError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise VGFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _where(path: Path, i: int, image_id: Any = None) -> str:
    s = f"{path}: entry {i}"
    if image_id is not None:
        s += f" (image_id={image_id})"
    return s


def _num(d: dict, key: str, where: str, *, integer: bool = False, minimum: float | None = None) -> float:
    if key not in d:
        raise VGFormatError(f"{where}: missing field '{key}'")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise VGFormatError(f"{where}: field '{key}' must be a finite number, got {v!r}")
    if integer and int(v) != v:
        raise VGFormatError(f"{where}: field '{key}' must be an integer, got {v!r}")
    if minimum is not None and v < minimum:
        raise VGFormatError(f"{where}: field '{key}' must be >= {minimum}, got {v!r}")
    return int(v) if integer else float(v)


def _name(d: dict, where: str) -> str:
    if isinstance(d.get("names"), list) and d["names"]:
        n = d["names"][0]
    elif "name" in d:
        n = d["name"]
    else:
        raise VGFormatError(f"{where}: object has neither 'names' nor 'name'")
    if not isinstance(n, str) or not n.strip():
        raise VGFormatError(f"{where}: object name must be a non-empty string, got {n!r}")
    return " ".join(n.strip().lower().split())


def _parse_object(d: Any, where: str) -> VGObject:
    if not isinstance(d, dict):
        raise VGFormatError(f"{where}: object must be a JSON object, got {type(d).__name__}")
    key = "object_id" if "object_id" in d else "id"
    oid = int(_num(d, key, where, integer=True))
    return VGObject(
        object_id=oid,
        name=_name(d, f"{where} (object_id={oid})"),
        x=_num(d, "x", where),
        y=_num(d, "y", where),
        w=_num(d, "w", where, minimum=0),
        h=_num(d, "h", where, minimum=0),
        synsets=[s for s in d.get("synsets", []) if isinstance(s, str)],
    )


def _fmt_box(box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def clip_object(o: VGObject, width: int, height: int, where: str) -> VGObject | None:
    """Clip ``o``'s box to a ``width`` x ``height`` image (warning when it changes); None (with a warning) when the
    clipped box has zero area. ``where`` names the entry in the messages."""
    x1, y1, x2, y2 = o.box
    c = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if c[2] - c[0] <= 0 or c[3] - c[1] <= 0:
        log.warning(
            "%s (object_id=%d, %r): box %s has zero area inside the %dx%d image; object dropped",
            where, o.object_id, o.name, _fmt_box((x1, y1, x2, y2)), width, height,
        )  # fmt: skip
        return None
    if c != (x1, y1, x2, y2):
        log.warning(
            "%s (object_id=%d, %r): box %s extends outside the %dx%d image; clipped to %s",
            where, o.object_id, o.name, _fmt_box((x1, y1, x2, y2)), width, height, _fmt_box(c),
        )  # fmt: skip
        o.x, o.y, o.w, o.h = c[0], c[1], c[2] - c[0], c[3] - c[1]
    return o


def _entries(data: Any, path: Path) -> list:
    if not isinstance(data, list):
        raise VGFormatError(f"{path}: top level must be a JSON list of per-image entries, got {type(data).__name__}")
    return data


def _image_id(entry: Any, path: Path, i: int) -> int:
    if not isinstance(entry, dict):
        raise VGFormatError(f"{_where(path, i)}: must be a JSON object, got {type(entry).__name__}")
    key = "image_id" if "image_id" in entry else "id"
    return int(_num(entry, key, _where(path, i), integer=True))


def _find_image(dirs: list[Path], image_id: int) -> str | None:
    for d in dirs:
        for ext in IMAGE_EXTENSIONS:
            cand = d / f"{image_id}{ext}"
            if cand.is_file():
                return str(cand)
    return None


def entry_image_id(entry: Any, path: Path, i: int) -> int:
    """The image id of entry ``i`` of a VG file (``image_id``, or ``id`` in ``image_data.json``); a one-line error
    naming the file and entry when it has none."""
    return _image_id(entry, path, i)


def parse_image_entry(entry: Any, path: Path, i: int, dirs: list[Path]) -> VGImage:
    """Entry ``i`` of ``image_data.json`` as an image without objects; its file is looked up in ``dirs``."""
    iid = _image_id(entry, path, i)
    where = _where(path, i, iid)
    w = int(_num(entry, "width", where, integer=True, minimum=1))
    h = int(_num(entry, "height", where, integer=True, minimum=1))
    return VGImage(image_id=iid, width=w, height=h, image_path=_find_image(dirs, iid))


def add_objects_entry(img: VGImage, entry: dict, path: Path, i: int, dropped: set[int]) -> None:
    """Add the objects of entry ``i`` of ``objects.json`` to ``img`` (clipped to its listed size); the ids of
    zero-area objects go to ``dropped``."""
    where = _where(path, i, img.image_id)
    objs = entry.get("objects")
    if not isinstance(objs, list):
        raise VGFormatError(f"{where}: field 'objects' must be a list")
    for j, od in enumerate(objs):
        ow = f"{where} object {j}"
        o = _parse_object(od, ow)
        if o.object_id in img.objects or o.object_id in dropped:
            raise VGFormatError(f"{ow}: duplicate object_id {o.object_id} in image_id={img.image_id}")
        if clip_object(o, img.width, img.height, ow) is None:
            dropped.add(o.object_id)
            continue
        img.objects[o.object_id] = o


def add_relationships_entry(img: VGImage, entry: dict, path: Path, i: int, dropped: set[int]) -> None:
    """Add the relationships of entry ``i`` of ``relationships.json`` to ``img`` (endpoints that only appear here
    become objects; relationships with a zero-area end are dropped with a warning)."""
    where = _where(path, i, img.image_id)
    rels = entry.get("relationships")
    if not isinstance(rels, list):
        raise VGFormatError(f"{where}: field 'relationships' must be a list")
    for j, rd in enumerate(rels):
        rw = f"{where} relationship {j}"
        if not isinstance(rd, dict):
            raise VGFormatError(f"{rw}: must be a JSON object, got {type(rd).__name__}")
        pred = rd.get("predicate")
        if not isinstance(pred, str) or not pred.strip():
            raise VGFormatError(f"{rw}: 'predicate' must be a non-empty string, got {pred!r}")
        ends = []
        for role in ("subject", "object"):
            if role not in rd:
                raise VGFormatError(f"{rw}: missing field '{role}'")
            o = _parse_object(rd[role], f"{rw} {role}")
            if o.object_id not in img.objects and o.object_id not in dropped:
                # VG lists some endpoints only inside relationships.json
                if clip_object(o, img.width, img.height, f"{rw} {role}") is None:
                    dropped.add(o.object_id)
                else:
                    img.objects[o.object_id] = o
            ends.append(o.object_id)
        if any(oid in dropped for oid in ends):
            log.warning("%s: an end has a zero-area box; relationship %r dropped", rw, pred.strip())
            continue
        rid = rd.get("relationship_id", j)
        img.relations.append(
            VGRelation(
                relationship_id=int(rid) if isinstance(rid, (int, float)) and not isinstance(rid, bool) else j,
                predicate=" ".join(pred.strip().lower().split()),
                subject_id=ends[0],
                object_id=ends[1],
            )
        )


def vg_paths(
    root: str | os.PathLike | None,
    objects_path: str | os.PathLike | None = None,
    relationships_path: str | os.PathLike | None = None,
    image_data_path: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
) -> tuple[Path, Path, Path, list[Path]]:
    """``(objects, relationships, image_data, image folders)`` of a VG root or of the explicit paths (rules of
    :func:`load_visual_genome`)."""
    r = Path(root) if root is not None else None
    if r is not None and not r.is_dir():
        raise FileNotFoundError(f"Visual Genome root {r} is not a directory")
    paths = {}
    for name, explicit in (
        ("objects", objects_path),
        ("relationships", relationships_path),
        ("image_data", image_data_path),
    ):
        if explicit is None and r is None:
            raise ValueError(f"give either root or {name}_path")
        paths[name] = Path(explicit) if explicit is not None else r / f"{name}.json"
    if image_dir is not None:
        dirs = [Path(image_dir)]
    else:
        dirs = [r / d for d in IMAGE_DIRS if (r / d).is_dir()] if r is not None else []
    return paths["objects"], paths["relationships"], paths["image_data"], dirs


def missing_images_error(missing: list[int], image_data: Path, dirs: list[Path]) -> FileNotFoundError:
    """The error for image files listed in ``image_data`` but not found in ``dirs``."""
    shown = ", ".join(str(m) for m in missing[:10])
    return FileNotFoundError(
        f"{len(missing)} image file(s) listed in {image_data} were not found in "
        f"{', '.join(str(d) for d in dirs) or '(no image folder)'}: {shown}"
        + (" ..." if len(missing) > 10 else "")
        + " (pass require_images=False / --allow-missing-images to skip them)"
    )


def load_visual_genome(
    root: str | os.PathLike | None = None,
    *,
    objects_path: str | os.PathLike | None = None,
    relationships_path: str | os.PathLike | None = None,
    image_data_path: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    require_images: bool = True,
) -> list[VGImage]:
    """Load VG scene graphs.

    ``root`` holds ``objects.json``, ``relationships.json``, ``image_data.json`` and an image folder (``images/``,
    ``VG_100K`` or ``VG_100K_2``); each may be given explicitly instead. ``limit`` keeps the first N images of
    ``image_data.json``. With ``require_images`` every image listed must exist on disk (a missing one is an error
    that names it); otherwise ``image_path`` is None for it. Boxes are clipped to the listed image size.
    """
    op, rp, ip, dirs = vg_paths(root, objects_path, relationships_path, image_data_path, image_dir)

    images: dict[int, VGImage] = {}
    for i, e in enumerate(_entries(_read_json(ip), ip)):
        if limit is not None and len(images) >= limit:
            break
        img = parse_image_entry(e, ip, i, dirs)
        if img.image_id in images:
            raise VGFormatError(f"{_where(ip, i, img.image_id)}: duplicate image_id {img.image_id}")
        images[img.image_id] = img

    dropped: dict[int, set[int]] = {iid: set() for iid in images}
    for i, e in enumerate(_entries(_read_json(op), op)):
        iid = _image_id(e, op, i)
        if iid in images:
            add_objects_entry(images[iid], e, op, i, dropped[iid])
    for i, e in enumerate(_entries(_read_json(rp), rp)):
        iid = _image_id(e, rp, i)
        if iid in images:
            add_relationships_entry(images[iid], e, rp, i, dropped[iid])

    out = list(images.values())
    if require_images:
        missing = [img.image_id for img in out if img.image_path is None]
        if missing:
            raise missing_images_error(missing, ip, dirs)
    return out


def read_image(path: str | os.PathLike, image_id: int | str) -> tuple[bytes, tuple[int, int]]:
    """Read an image file and check it: open, verify and fully decode it.

    Returns the file's bytes and its pixel size ``(W, H)``. A missing, corrupt or truncated file raises
    :class:`ImageFileError` naming the file and the image id.
    """
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size = im.size
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError, ...)
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ImageFileError(f"{path}: image_id={image_id}: cannot read image ({type(e).__name__}: {msg})") from e
    if size[0] < 1 or size[1] < 1:
        raise ImageFileError(f"{path}: image_id={image_id}: image has no pixels ({size[0]}x{size[1]})")
    return data, size


def image_size(path: str | os.PathLike, image_id: int | str) -> tuple[int, int]:
    """The pixel size ``(W, H)`` of an image file from its header (fast; :func:`read_image` does the full check).
    An unreadable file raises :class:`ImageFileError` naming the file and the image id."""
    try:
        with Image.open(path) as im:
            size = im.size
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ImageFileError(f"{path}: image_id={image_id}: cannot read image ({type(e).__name__}: {msg})") from e
    if size[0] < 1 or size[1] < 1:
        raise ImageFileError(f"{path}: image_id={image_id}: image has no pixels ({size[0]}x{size[1]})")
    return size


def rescale_image(img: VGImage, size: tuple[int, int]) -> VGImage:
    """``img`` with its boxes in the frame of the actual image file of ``size`` = ``(W, H)``.

    When the file's size differs from the one listed in ``image_data.json`` a rescaled copy is returned (with a
    warning naming the image); otherwise ``img`` itself. The input is never modified.
    """
    w, h = size
    if (w, h) == (img.width, img.height):
        return img
    log.warning(
        "image_id=%d (%s): file is %dx%d but image_data.json lists %dx%d; boxes rescaled to the file's size",
        img.image_id, img.image_path, w, h, img.width, img.height,
    )  # fmt: skip
    sx, sy = w / img.width, h / img.height
    objects = {
        k: replace(o, x=o.x * sx, y=o.y * sy, w=o.w * sx, h=o.h * sy, synsets=list(o.synsets))
        for k, o in img.objects.items()
    }
    return replace(img, width=w, height=h, objects=objects, relations=list(img.relations))
