"""Visual Genome scene-graph loader.

Reads the three standard VG v1.4 files -- ``objects.json``,
``relationships.json`` and ``image_data.json`` -- into plain dataclasses.
Every structural problem is reported as a :class:`VGFormatError` naming the
file, the entry index, the image id and the offending field; nothing is
silently dropped.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


class VGFormatError(ValueError):
    """Input files do not follow the Visual Genome format."""


@dataclass
class VGObject:
    object_id: int
    name: str
    x: float
    y: float
    w: float
    h: float
    synsets: list[str] = field(default_factory=list)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x + self.w, self.y + self.h)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)

    @property
    def area(self) -> float:
        return self.w * self.h


@dataclass
class VGRelation:
    relationship_id: int
    predicate: str
    subject_id: int
    object_id: int


@dataclass
class VGImage:
    image_id: int
    width: int
    height: int
    image_path: str | None
    objects: dict[int, VGObject] = field(default_factory=dict)
    relations: list[VGRelation] = field(default_factory=list)

    def names(self) -> list[str]:
        return [o.name for o in self.objects.values()]


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"Visual Genome file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise VGFormatError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise VGFormatError(f"{path}: not UTF-8 text ({e})") from e


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
    oid = _num(d, "object_id", where, integer=True) if "object_id" in d else _num(d, "id", where, integer=True)
    return VGObject(
        object_id=int(oid),
        name=_name(d, f"{where} object_id={int(oid)}"),
        x=_num(d, "x", where),
        y=_num(d, "y", where),
        w=_num(d, "w", where, minimum=0),
        h=_num(d, "h", where, minimum=0),
        synsets=[s for s in d.get("synsets", []) if isinstance(s, str)],
    )


def _entries(data: Any, path: Path) -> list:
    if not isinstance(data, list):
        raise VGFormatError(f"{path}: top level must be a JSON list of per-image entries, got {type(data).__name__}")
    return data


def _image_id(entry: Any, path: Path, i: int) -> int:
    if not isinstance(entry, dict):
        raise VGFormatError(f"{_where(path, i)}: must be a JSON object, got {type(entry).__name__}")
    key = "image_id" if "image_id" in entry else "id"
    return int(_num(entry, key, _where(path, i), integer=True))


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

    ``root`` holds ``objects.json``, ``relationships.json``,
    ``image_data.json`` and an image folder (``images/``, ``VG_100K`` or
    ``VG_100K_2``); each may be given explicitly instead.  With
    ``require_images`` every image listed must exist on disk (a missing one
    is an error that names it); otherwise ``image_path`` is ``None`` for it.
    """
    r = Path(root) if root is not None else None
    if r is not None and not r.is_dir():
        raise FileNotFoundError(f"Visual Genome root {r} is not a directory")

    def pick(explicit, name):
        if explicit is not None:
            return Path(explicit)
        if r is None:
            raise ValueError(f"give either root or {name}_path")
        return r / f"{name}.json"

    op, rp, ip = pick(objects_path, "objects"), pick(relationships_path, "relationships"), pick(image_data_path, "image_data")
    dirs: list[Path] = []
    if image_dir is not None:
        dirs = [Path(image_dir)]
    elif r is not None:
        dirs = [r / d for d in ("images", "VG_100K", "VG_100K_2") if (r / d).is_dir()]

    images: dict[int, VGImage] = {}
    order: list[int] = []
    for i, e in enumerate(_entries(_read_json(ip), ip)):
        iid = _image_id(e, ip, i)
        where = _where(ip, i, iid)
        if iid in images:
            raise VGFormatError(f"{where}: duplicate image_id")
        w = _num(e, "width", where, integer=True, minimum=1)
        h = _num(e, "height", where, integer=True, minimum=1)
        path = None
        for d in dirs:
            for ext in (".jpg", ".jpeg", ".png"):
                cand = d / f"{iid}{ext}"
                if cand.exists():
                    path = str(cand)
                    break
            if path:
                break
        images[iid] = VGImage(image_id=iid, width=int(w), height=int(h), image_path=path)
        order.append(iid)
        if limit is not None and len(order) >= limit:
            break

    for i, e in enumerate(_entries(_read_json(op), op)):
        iid = _image_id(e, op, i)
        if iid not in images:
            continue
        where = _where(op, i, iid)
        objs = e.get("objects")
        if not isinstance(objs, list):
            raise VGFormatError(f"{where}: field 'objects' must be a list")
        for j, od in enumerate(objs):
            o = _parse_object(od, f"{where} object {j}")
            images[iid].objects[o.object_id] = o

    for i, e in enumerate(_entries(_read_json(rp), rp)):
        iid = _image_id(e, rp, i)
        if iid not in images:
            continue
        where = _where(rp, i, iid)
        rels = e.get("relationships")
        if not isinstance(rels, list):
            raise VGFormatError(f"{where}: field 'relationships' must be a list")
        img = images[iid]
        for j, rd in enumerate(rels):
            rw = f"{where} relationship {j}"
            if not isinstance(rd, dict):
                raise VGFormatError(f"{rw}: must be a JSON object")
            pred = rd.get("predicate")
            if not isinstance(pred, str) or not pred.strip():
                raise VGFormatError(f"{rw}: 'predicate' must be a non-empty string, got {pred!r}")
            ends = []
            for role in ("subject", "object"):
                if role not in rd:
                    raise VGFormatError(f"{rw}: missing field '{role}'")
                o = _parse_object(rd[role], f"{rw} {role}")
                # VG lists some relationship endpoints only inside relationships.json
                img.objects.setdefault(o.object_id, o)
                ends.append(o.object_id)
            rid = rd.get("relationship_id", j)
            img.relations.append(
                VGRelation(
                    relationship_id=int(rid) if isinstance(rid, (int, float)) else j,
                    predicate=" ".join(pred.strip().lower().split()),
                    subject_id=ends[0],
                    object_id=ends[1],
                )
            )

    out = [images[i] for i in order]
    if require_images:
        missing = [img.image_id for img in out if img.image_path is None]
        if missing:
            shown = ", ".join(str(m) for m in missing[:10])
            raise FileNotFoundError(
                f"{len(missing)} image file(s) listed in {ip} were not found in "
                f"{', '.join(str(d) for d in dirs) or '(no image folder)'}: {shown}"
                + (" ..." if len(missing) > 10 else "")
                + " (pass require_images=False / --allow-missing-images to skip them)"
            )
    return out


def iter_boxes(img: VGImage, ids: Iterable[int]) -> list[tuple[float, float, float, float]]:
    return [img.objects[i].box for i in ids]
