"""The streamed STVQA builder: Visual Genome at full scale in bounded memory, on every core, resumable.

Same dataset as :func:`datagen.build.build_stvqa` (same rows, order, seeded choices, balance, split, one-line errors
and overwrite rules) but no step holds all images, their bytes or the rows:

0. **index** (main process): ``image_data.json`` is read entry by entry (``ijson``); the entries of
   ``objects.json`` and ``relationships.json`` are streamed the same way into two spill files in the work folder,
   with an index ``image_id -> (entry, offset, length)``, so that a worker reads one image's scene graph with one
   ``pread``;
1. **vocabulary** (workers, chunks of images): each image's scene graph is parsed and clipped, its file's header
   read; the object names of the usable images make the vocabulary (existence questions draw absent names from it);
2. **candidates** (workers): per image the boxes are rescaled to the file, one candidate question per category is
   made (seeded by ``(seed, image_id, category)`` as before) and the image file of an image with a candidate is
   opened, verified and fully decoded; only the candidate categories come back (a few bytes per image);
3. **plan** (main): categories are assigned (:func:`datagen.build.assign_categories`) and split 90/10 per category
   (:func:`datagen.build.val_image_ids`) from those compact candidates;
4. **shards** (workers): each split's rows, in ``(image_id, category)`` order, are cut into shards of
   ``rows_per_shard``; a worker re-makes a shard's questions, reads the images one at a time and writes the rows
   with the ``datasets`` Arrow writer (a batch of ``writer_batch_size`` rows in memory at most);
5. **install**: the shards become the ``data-*-of-*.arrow`` files of a ``save_to_disk`` folder (renames, no
   copy) that is swapped into place like :func:`datagen.build.save_dataset` does.

Resumable: the work folder ``.<out>.partial`` (next to the output) keeps every finished stage and every finished
shard (a shard is written under a temporary name and renamed when complete). A build that is killed continues
from there when run again with the same inputs and settings (a work folder of other inputs or settings is
discarded). Bad input removes the work folder.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import shutil
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import ijson
import orjson

from datagen.build import (
    CATEGORIES,
    TOOL,
    BuildError,
    BuildSettings,
    Sample,
    _real,
    _rng,
    _row,
    assign_categories,
    candidate_questions,
    check_output,
    install_folder,
    val_image_ids,
    write_marker,
)
from datagen.llm import ChatClient, EndpointSettings, write_questions
from datagen.questions import Question, make_question, question_subgraph
from datagen.schema import PASSES_COLUMN, SPLITS, features
from datagen.vg import (
    ImageFileError,
    VGFormatError,
    VGImage,
    VGObject,
    VGRelation,
    add_objects_entry,
    add_relationships_entry,
    entry_image_id,
    image_size,
    missing_images_error,
    parse_image_entry,
    read_image,
    rescale_image,
    vg_paths,
)
from rewards.prompt import PromptBuilder, PromptSettings


class Verifier(Protocol):
    """The VLM verifier stage as the builder sees it (:class:`cluster.verify.VerifierSettings`: it reads answers with
    the evaluation's extraction and may run on the rollout pool, layers above this package)."""

    model: str
    tries: int
    backend: str
    temperature: float

    def run(self, items: Iterable, work: Path, prompt: PromptSettings) -> dict[str, int]:
        """Right answers out of ``tries`` per question key of ``items`` ``(key, text, options, answer, image)``."""


log = logging.getLogger(__name__)

WORK_MANIFEST = "work.json"
"""Manifest of a work folder: the tool, and the key of the inputs and settings it belongs to."""


@dataclass
class StreamSettings:
    """How the streamed builder uses the machine (none of these change the dataset, except the file layout)."""

    workers: int = 0
    """Worker processes; 0 = one per core (``os.cpu_count()``); 1 = everything in the calling process."""
    rows_per_shard: int = 1000
    """Rows per Arrow file of the output (about 170 MB of Visual Genome images); also the unit of resumption."""
    chunk_images: int = 200
    """Images per worker task in the vocabulary and candidate stages."""
    writer_batch_size: int = 50
    """Rows the Arrow writer holds before writing a record batch (bounds a worker's memory)."""

    def __post_init__(self):
        for name in ("rows_per_shard", "chunk_images", "writer_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise BuildError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise BuildError(f"workers must be an integer >= 0, got {self.workers!r}")


@dataclass
class ImageRecord:
    """What a worker needs to rebuild one image's scene graph (a few hundred bytes; one per image)."""

    entry: dict
    """The image's ``image_data.json`` entry."""
    index: int
    """Its position in ``image_data.json`` (for messages)."""
    objects: list[tuple[int, int, int]]
    """``(entry index, offset, length)`` of its ``objects.json`` entries in the objects spill file."""
    relationships: list[tuple[int, int, int]]
    """The same for ``relationships.json``."""
    image_id: int = 0
    """The image id."""
    path: str | None = None
    """The image file (None when it was not found)."""
    scene: tuple[int, int, int] | None = None
    """``(chunk, offset, length)`` of the packed scene graph (checked, clipped, rescaled to the file) after the
    vocabulary stage."""


# ----------------------------------------------------------------------------------------------------------------
# stage 0: the index


def _top_level_list(path: Path) -> None:
    """A one-line error unless the file's top level is a JSON list (read from its first non-blank byte)."""
    if not path.exists():
        raise FileNotFoundError(f"Visual Genome file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    kinds = {b"{": "dict", b'"': "str", b"t": "bool", b"f": "bool", b"n": "NoneType"}
    if head[:1] != b"[":
        kind = kinds.get(head[:1], "int" if head[:1].isdigit() or head[:1] == b"-" else "nothing")
        if not head:
            raise VGFormatError(f"{path}: invalid JSON at line 1 column 1: Expecting value")
        raise VGFormatError(f"{path}: top level must be a JSON list of per-image entries, got {kind}")


def iter_entries(path: Path) -> Iterator[tuple[int, Any]]:
    """``(index, entry)`` of a VG file's top-level list, parsed incrementally (memory of one entry)."""
    _top_level_list(path)
    i = -1
    try:
        with open(path, "rb") as fh:
            for i, e in enumerate(ijson.items(fh, "item", use_float=True)):
                yield i, e
    except ijson.JSONError as e:
        msg = " ".join(str(e).split())
        raise VGFormatError(f"{path}: invalid JSON after entry {i} ({msg})") from e
    except UnicodeDecodeError as e:
        raise VGFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def build_index(
    objects: Path, relationships: Path, image_data: Path, dirs: list[Path], work: Path, limit: int | None,
    require_images: bool,
) -> list[ImageRecord]:  # fmt: skip
    """Stage 0: the image records, in ``image_data.json`` order, and the two spill files in ``work``."""
    records: dict[int, ImageRecord] = {}
    missing = []
    for i, e in iter_entries(image_data):
        if limit is not None and len(records) >= limit:
            break
        img = parse_image_entry(e, image_data, i, dirs)
        if img.image_id in records:
            where = f"{image_data}: entry {i} (image_id={img.image_id})"
            raise VGFormatError(f"{where}: duplicate image_id {img.image_id}")
        records[img.image_id] = ImageRecord(e, i, [], [], img.image_id, img.image_path)
        if img.image_path is None:
            missing.append(img.image_id)
    if require_images and missing:
        raise missing_images_error(missing, image_data, dirs)
    for path, attr in ((objects, "objects"), (relationships, "relationships")):
        tmp = work / f"{attr}.spill.tmp"
        offset = 0
        with open(tmp, "wb") as out:
            for i, e in iter_entries(path):
                iid = entry_image_id(e, path, i)
                rec = records.get(iid)
                if rec is None:
                    continue
                data = orjson.dumps(e)
                out.write(data)
                getattr(rec, attr).append((i, offset, len(data)))
                offset += len(data)
        os.replace(tmp, work / f"{attr}.spill")
    return list(records.values())


# ----------------------------------------------------------------------------------------------------------------
# worker side


class _Spill:
    """Reads spilled entries by offset (one open file per worker and spill)."""

    _files: dict[str, Any] = {}

    @classmethod
    def read(cls, path: str, offset: int, length: int) -> Any:
        return orjson.loads(cls.read_raw(path, offset, length))

    @classmethod
    def read_raw(cls, path: str, offset: int, length: int) -> bytes:
        fh = cls._files.get(path)
        if fh is None:
            fh = cls._files[path] = open(path, "rb")  # noqa: SIM115 - kept open for the worker's life
        return os.pread(fh.fileno(), length, offset)


def load_image(rec: ImageRecord, ctx: dict) -> VGImage:
    """One image's scene graph from the spill files (same checks, clipping, warnings and messages as
    :func:`datagen.vg.load_visual_genome`)."""
    img = parse_image_entry(rec.entry, Path(ctx["image_data"]), rec.index, [])
    img.image_path = rec.path
    dropped: set[int] = set()
    for i, off, n in rec.objects:
        add_objects_entry(img, _Spill.read(ctx["objects_spill"], off, n), Path(ctx["objects"]), i, dropped)
    for i, off, n in rec.relationships:
        e = _Spill.read(ctx["relationships_spill"], off, n)
        add_relationships_entry(img, e, Path(ctx["relationships"]), i, dropped)
    return img


def _pack(img: VGImage) -> bytes:
    """A checked, clipped and rescaled scene graph, compactly (re-read by :func:`unpack` without new checks)."""
    objs = [(o.object_id, o.name, o.x, o.y, o.w, o.h) for o in img.objects.values()]
    rels = [(r.relationship_id, r.predicate, r.subject_id, r.object_id) for r in img.relations]
    return pickle.dumps((img.image_id, img.width, img.height, img.image_path, objs, rels), pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> VGImage:
    """The image of :func:`_pack`."""
    iid, w, h, path, objs, rels = pickle.loads(data)
    img = VGImage(image_id=iid, width=w, height=h, image_path=path)
    img.objects = {o[0]: VGObject(*o) for o in objs}
    img.relations = [VGRelation(*r) for r in rels]
    return img


def _scene(rec: ImageRecord, ctx: dict) -> VGImage:
    k, off, n = rec.scene
    return unpack(_Spill.read_raw(str(Path(ctx["scenes"]) / f"{k:05d}.bin"), off, n))


class _Captured(logging.Handler):
    """Collects a worker's warnings so that the main process logs them, in image order."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


def _captured(fn: Callable, *args) -> tuple[Any, list[tuple[str, int, str]]]:
    handler = _Captured()
    root = logging.getLogger("datagen")
    root.addHandler(handler)
    propagate = root.propagate
    root.propagate = False
    try:
        return fn(*args), handler.records
    finally:
        root.removeHandler(handler)
        root.propagate = propagate


_VOCAB: dict[str, list[str]] = {}


def _vocabulary(path: str) -> list[str]:
    if path not in _VOCAB:
        _VOCAB.clear()
        _VOCAB[path] = json.loads(Path(path).read_text())
    return _VOCAB[path]


def _vocabulary_task(job: tuple[int, list[ImageRecord]], ctx: dict) -> list[tuple[int, tuple | None, list[str]]]:
    """Stage 1 for chunk ``k``: parse, check and clip each image's scene graph, read its file's header and rescale
    the boxes to it, and store it packed in ``scenes/<k>.bin``. Per image ``(image_id, (k, offset, length) or None
    when the image is unusable, kept object names)``."""
    k, recs = job
    out = []
    final = Path(ctx["scenes"]) / f"{k:05d}.bin"
    tmp = final.with_suffix(".tmp")
    offset = 0
    with open(tmp, "wb") as fh:
        for rec in recs:
            img = load_image(rec, ctx)
            if img.image_path is None:
                out.append((img.image_id, None, []))
                continue
            try:
                size = image_size(img.image_path, img.image_id)
            except ImageFileError as e:
                if not ctx["allow_bad_images"]:
                    raise
                log.warning("%s; image skipped", e)
                out.append((img.image_id, None, []))
                continue
            data = _pack(rescale_image(img, size))
            fh.write(data)
            out.append((img.image_id, (k, offset, len(data)), sorted({o.name for o in img.objects.values()})))
            offset += len(data)
    os.replace(tmp, final)
    return out


def _candidate_task(recs: list[ImageRecord], ctx: dict) -> list[tuple[int, tuple[str, ...], int | None]]:
    """Stage 2 for a chunk: per image ``(image_id, candidate categories, crc32 of the file or None when it does not
    decode)``; the file of an image with a candidate is fully decoded."""
    settings: BuildSettings = ctx["settings"]
    vocabulary = _vocabulary(ctx["vocabulary"])
    out = []
    for rec in recs:
        img = _scene(rec, ctx)
        cats = tuple(candidate_questions(img, settings, vocabulary))
        crc = None
        if cats:
            try:
                crc = zlib.crc32(read_image(img.image_path, img.image_id)[0])
            except ImageFileError as e:
                if not settings.allow_bad_images:
                    raise
                log.warning("%s; image skipped", e)
        out.append((img.image_id, cats, crc))
    return out


def _shard_task(job: tuple[str, int, list[tuple[ImageRecord, str, int]]], ctx: dict) -> int:
    """Stage 4: write one shard (rows in the given order) to ``<split>-<index>.arrow`` in the work folder."""
    from datasets.arrow_writer import ArrowWriter

    split, index, items = job
    settings: BuildSettings = ctx["settings"]
    vocabulary = _vocabulary(ctx["vocabulary"])
    builder = PromptBuilder(ctx["prompt"])
    final = Path(ctx["shards"]) / f"{split}-{index:05d}.arrow"
    tmp = final.with_suffix(".arrow.tmp")
    feats = features(with_passes=ctx["with_passes"])
    writer = ArrowWriter(features=feats, path=str(tmp), writer_batch_size=ctx["writer_batch_size"])
    try:
        for rec, cat, crc, written, passes in items:
            img = _scene(rec, ctx)
            q = _question(img, cat, written, settings, vocabulary)
            data = Path(img.image_path).read_bytes()
            if zlib.crc32(data) != crc:
                raise BuildError(f"{img.image_path}: image_id={img.image_id}: the file changed during the build")
            row = _row(Sample(img, q, question_subgraph(img, q.question)), data, builder)
            if ctx["with_passes"]:
                row[PASSES_COLUMN] = passes
            writer.write(row)
        n, _ = writer.finalize()
    finally:
        writer.close()
    os.replace(tmp, final)
    return n


def _question(img: VGImage, cat: str, written: dict | None, settings: BuildSettings, vocabulary) -> Question:
    """The question of a row: the writer's (``written``) or the seeded template question."""
    if written is not None:
        facts = {"level": written["level"], "rating": written["rating"], "source": "writer"}
        return Question(cat, written["question"], written["options"], written["answer_index"], facts=facts)
    q = make_question(img, cat, _rng(settings.seed, img.image_id, cat), vocabulary=vocabulary)
    if q is None:  # the candidate stage made this very question from the same input
        raise BuildError(f"image_id={img.image_id}: the {cat} question could not be made again")
    return q


def _llm_stages(
    picks: list[tuple[int, str]], records: list[ImageRecord], work: Path, ctx: dict,
    writer: EndpointSettings | None, verifier: Verifier | None,
) -> tuple[dict, dict]:  # fmt: skip
    """The writer and verifier stages (main process, HTTP threads); ``({pick: written question}, {key: passes})``.
    Both keep their results in the work folder, so a rerun asks only for what is missing."""
    written: dict = {}
    passes: dict = {}
    if writer is None and verifier is None:
        return written, passes
    by_id = {r.image_id: r for r in records}

    def scene_of(iid: int) -> VGImage:
        return _scene(by_id[iid], ctx)

    if writer is not None:
        client = ChatClient(writer)
        written, outcomes = write_questions(picks, scene_of, client, work / "writer.jsonl")
        table = ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
        log.info("writer: %d of %d questions kept (%s); %s", len(written), len(picks), table,
                 client.usage.as_dict(writer))  # fmt: skip
        ctx["writer_report"] = {"outcomes": dict(outcomes), "usage": client.usage.as_dict(writer)}
    if verifier is not None:
        settings: BuildSettings = ctx["settings"]
        vocabulary = _vocabulary(ctx["vocabulary"]) if writer is None else []
        builder = PromptBuilder(ctx["prompt"])
        keep = [p for p in picks if writer is None or p in written]

        def items():
            for iid, cat in keep:
                img = scene_of(iid)
                q = _question(img, cat, written.get((iid, cat)), settings, vocabulary)
                text = builder.text(q.question, q.options, (img.width, img.height))
                yield f"{iid}:{cat}", text, q.options, q.answer_index, Path(img.image_path).read_bytes()

        passes = verifier.run(items(), work, ctx["prompt"])
        kept = sum(1 for p in keep if passes[f"{p[0]}:{p[1]}"] >= 1)
        log.info("verifier: %d of %d questions answered right at least once in %d tries", kept, len(keep),
                 verifier.tries)  # fmt: skip
    return written, passes


def _run_task(fn_name: str, payload: Any, ctx: dict) -> tuple[Any, list]:
    return _captured(_TASKS[fn_name], payload, ctx)


_TASKS: dict[str, Callable] = {"vocabulary": _vocabulary_task, "candidates": _candidate_task, "shard": _shard_task}


def _watch_parent(parent: int) -> None:
    """A worker ends itself when the build process is gone (killed), so no orphan keeps working."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _worker_init(parent: int, level: int) -> None:
    logging.basicConfig(level=level)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


class _Runner:
    """Runs tasks in worker processes (or in this process for ``workers == 1``), results in submission order,
    at most ``2 * workers`` tasks in flight."""

    def __init__(self, workers: int, ctx: dict):
        self.workers, self.ctx = workers, ctx
        self.pool = None
        if workers > 1:
            # fork: the workers start at once, with the modules already imported (spawn re-imports datasets and
            # torch in each, seconds apiece); the pool is made before the build holds any data
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = cf.ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context(method),
                initializer=_worker_init,
                initargs=(os.getpid(), logging.getLogger().getEffectiveLevel()),
            )
            for started in [self.pool.submit(os.getpid) for _ in range(workers)]:  # start them all now
                started.result(timeout=120)

    def map(self, kind: str, payloads: Iterable[Any]) -> Iterator[Any]:
        if self.pool is None:
            for p in payloads:
                result, records = _run_task(kind, p, self.ctx)
                _replay(records)
                yield result
            return
        pending: deque = deque()
        it = iter(payloads)
        for p in it:
            pending.append(self.pool.submit(_run_task, kind, p, self.ctx))
            if len(pending) >= 2 * self.workers:
                break
        while pending:
            result, records = pending.popleft().result()
            _replay(records)
            for p in it:
                pending.append(self.pool.submit(_run_task, kind, p, self.ctx))
                break
            yield result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _replay(records: list[tuple[str, int, str]]) -> None:
    for name, level, msg in records:
        logging.getLogger(name).log(level, "%s", msg)


# ----------------------------------------------------------------------------------------------------------------
# main side


def _chunks(items: list, n: int) -> Iterator[list]:
    for k in range(0, len(items), n):
        yield items[k : k + n]


def _save(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)


def _load(path: Path) -> Any:
    return pickle.loads(path.read_bytes()) if path.is_file() else None


def _work_key(paths: Iterable[Path], dirs: list[Path], settings: BuildSettings, stream: StreamSettings, extra) -> str:
    """Identity of a build: the input files (path, size, mtime), image folders, settings and shard size."""
    parts = []
    for p in paths:
        st = p.stat()
        parts.append([str(_real(p)), st.st_size, st.st_mtime_ns])
    parts.append([str(_real(d)) for d in dirs])
    parts.append(asdict(settings))
    parts.append([stream.rows_per_shard, extra])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _work_folder(out: Path, key: str) -> tuple[Path, bool]:
    """The work folder next to ``out`` and whether it holds an earlier build of the same key (to resume)."""
    work = out.parent / f".{out.name}.partial"
    if work.exists():
        try:
            manifest = json.loads((work / WORK_MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("tool") != TOOL:
            raise BuildError(f"{work} exists and is not a work folder of make_dataset; move it away first")
        if manifest.get("key") == key:
            return work, True
        log.info("%s: discarding an unfinished build of other inputs or settings", work)
        shutil.rmtree(work)
    (work / "shards").mkdir(parents=True)
    (work / "scenes").mkdir()
    (work / WORK_MANIFEST).write_text(json.dumps({"tool": TOOL, "key": key}))
    return work, False


def _dataset_files(split_dir: Path, shard_files: list[Path], with_passes: bool) -> None:
    """Turn finished shard files into a ``save_to_disk`` split folder (``data-*-of-*.arrow``, state and info)."""
    from datasets import DatasetInfo

    split_dir.mkdir(parents=True)
    n = len(shard_files)
    names = [f"data-{k:05d}-of-{n:05d}.arrow" for k in range(n)]
    for src, name in zip(shard_files, names):
        os.rename(src, split_dir / name)
    fingerprint = hashlib.sha256("".join(names).encode() + str(split_dir.name).encode()).hexdigest()[:16]
    state = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (split_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    info = asdict(DatasetInfo(features=features(with_passes)))
    (split_dir / "dataset_info.json").write_text(json.dumps({k: info[k] for k in sorted(info)}, indent=2))


def build_streamed(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    settings: BuildSettings | None = None,
    stream: StreamSettings | None = None,
    limit: int | None = None,
    require_images: bool = True,
    overwrite: bool = False,
    prompt: PromptSettings | None = None,
    source: str | None = None,
    inputs: Iterable[str | os.PathLike] | None = None,
    writer: EndpointSettings | None = None,
    verifier: Verifier | None = None,
) -> dict[str, int]:
    """Build the STVQA dataset of the VG folder ``root`` into ``out_dir`` (see the module docstring); returns the
    row count per split. Arguments as :func:`datagen.build.build_from_vg`; ``stream`` sets workers and shards;
    ``inputs`` (default ``[root]``) are the paths the output must stay clear of; ``writer`` (an LLM endpoint)
    replaces the template questions by written ones, ``verifier`` keeps the questions a VLM answers right at least
    once in ``verifier.tries`` (pass count in the ``verify_passes`` column)."""
    settings = settings or BuildSettings()
    stream = stream or StreamSettings()
    prompt = prompt or PromptSettings()
    inputs = [root] if inputs is None else list(inputs)
    out = check_output(out_dir, inputs, overwrite)  # before any work
    objects, relationships, image_data, dirs = vg_paths(root)
    for p in (objects, relationships, image_data):
        if not p.exists():
            raise FileNotFoundError(f"Visual Genome file not found: {p}")
    out.parent.mkdir(parents=True, exist_ok=True)
    llm = [
        [writer.model, writer.url, writer.temperature, writer.max_tokens] if writer else None,
        [verifier.model, verifier.tries, verifier.backend, verifier.temperature] if verifier else None,
    ]  # what changes the questions kept (not concurrency or timeouts: a rerun with other ones resumes)
    key = _work_key((objects, relationships, image_data), dirs, settings, stream, [limit, require_images, llm])
    work, resumed = _work_folder(out, key)
    workers = stream.workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    if resumed:
        log.info("resuming the unfinished build in %s", work)
    ctx = {
        "objects": str(objects), "relationships": str(relationships), "image_data": str(image_data), "dirs": dirs,
        "objects_spill": str(work / "objects.spill"), "relationships_spill": str(work / "relationships.spill"),
        "vocabulary": str(work / "vocabulary.json"), "scenes": str(work / "scenes"), "shards": str(work / "shards"),
        "settings": settings, "allow_bad_images": settings.allow_bad_images, "with_passes": verifier is not None,
        "prompt": prompt, "writer_batch_size": stream.writer_batch_size,
    }  # fmt: skip
    runner = _Runner(workers, ctx)
    try:
        records = _load(work / "index.pkl")
        if records is None:
            records = build_index(objects, relationships, image_data, dirs, work, limit, require_images)
            _save(work / "index.pkl", records)
        log.info("index: %d images (%.1f s)", len(records), time.perf_counter() - t0)

        if not (work / "vocabulary.json").is_file():
            no_file = [r.image_id for r in records if r.path is None]
            if no_file:
                log.warning("%d image(s) have no image file and are left out (first: %s)", len(no_file), no_file[:5])
            names: set[str] = set()
            scenes: dict[int, tuple | None] = {}
            for chunk in runner.map("vocabulary", enumerate(_chunks(records, stream.chunk_images))):
                for iid, ref, kept in chunk:
                    scenes[iid] = ref
                    names.update(kept)
            _save(work / "scenes.pkl", scenes)
            tmp = work / "vocabulary.json.tmp"
            tmp.write_text(json.dumps(sorted(names)))
            os.replace(tmp, work / "vocabulary.json")
            for spill in ("objects.spill", "relationships.spill"):  # the packed scenes replace them
                (work / spill).unlink()
        scenes = _load(work / "scenes.pkl")
        records = [r for r in records if scenes[r.image_id] is not None]
        for r in records:
            r.scene = scenes[r.image_id]
            r.entry, r.objects, r.relationships = {}, [], []  # no longer needed: keep the main process small
        del scenes
        log.info("vocabulary: %d usable images (%.1f s)", len(records), time.perf_counter() - t0)

        plan = _load(work / "plan.pkl")
        if plan is None:
            candidates: dict[int, tuple[str, ...]] = {}
            crcs: dict[int, int | None] = {}
            for chunk in runner.map("candidates", _chunks(records, stream.chunk_images)):
                for iid, cats, crc in chunk:
                    if cats:
                        candidates[iid] = cats
                        crcs[iid] = crc
            if not candidates:
                raise BuildError(
                    f"no questions could be made from the {len(records)} usable image(s) (too few objects?)"
                )
            picks = [(iid, cat) for iid, cat in assign_categories(candidates, settings) if crcs[iid] is not None]
            del candidates
            if not picks:
                raise BuildError(f"no questions could be made from the {len(records)} usable image(s)")
            picks.sort(key=lambda p: (p[0], CATEGORIES.index(p[1])))
            written, passes = _llm_stages(picks, records, work, ctx, writer, verifier)
            if writer is not None:
                picks = [p for p in picks if p in written]
            if verifier is not None:
                picks = [p for p in picks if passes[f"{p[0]}:{p[1]}"] >= 1]
            if not picks:
                raise BuildError("no question passed the writer's checks and the verifier")
            val = val_image_ids(picks, settings.val_fraction, settings.seed)
            plan = {
                s: [
                    (iid, cat, crcs[iid], written.get((iid, cat)), passes.get(f"{iid}:{cat}"))
                    for iid, cat in picks
                    if (iid in val) == (s == "val")
                ]
                for s in SPLITS
            }
            del picks, crcs, written, passes
            _save(work / "plan.pkl", plan)
        log.info("plan: %s (%.1f s)", ", ".join(f"{s} {len(v)}" for s, v in plan.items()), time.perf_counter() - t0)

        by_id = {r.image_id: r for r in records}
        del records
        jobs = []
        for split in SPLITS:
            rows = plan[split]
            n_shards = max(1, -(-len(rows) // stream.rows_per_shard))
            for k in range(n_shards):
                if not (work / "shards" / f"{split}-{k:05d}.arrow").is_file():
                    jobs.append((split, k, rows[k * stream.rows_per_shard : (k + 1) * stream.rows_per_shard]))
        for stray in (work / "shards").glob("*.tmp"):
            stray.unlink()
        total = sum(max(1, -(-len(plan[s]) // stream.rows_per_shard)) for s in SPLITS)
        if total - len(jobs):
            log.info("shards: %d of %d already written", total - len(jobs), total)
        payloads = (
            (split, k, [(by_id[row[0]], *row[1:]) for row in rows]) for split, k, rows in jobs
        )  # image records are attached lazily: one shard's worth at a time
        for done, _ in enumerate(runner.map("shard", payloads), 1):
            if done % 10 == 0 or done == len(jobs):
                written = total - len(jobs) + done
                log.info("shards: %d of %d written (%.1f s)", written, total, time.perf_counter() - t0)
        runner.close()
        runner = None

        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.time_ns()}"
        try:
            tmp.mkdir()
            counts = {}
            for split in SPLITS:
                files = sorted((work / "shards").glob(f"{split}-*.arrow"))
                _dataset_files(tmp / split, files, ctx["with_passes"])
                counts[split] = len(plan[split])
            (tmp / "dataset_dict.json").write_text(json.dumps({"splits": list(SPLITS)}))
            src = source if source is not None else str(Path(root).resolve())
            info = {"settings": asdict(settings), "source": src, "builder": "streamed"}
            if writer is not None:
                info["writer"] = {"model": writer.model, **ctx.get("writer_report", {})}
            if verifier is not None:
                info["verifier"] = {"model": verifier.model, "tries": verifier.tries}
            write_marker(tmp, counts, info)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        install_folder(tmp, out_dir, inputs=inputs, overwrite=overwrite)
    except Exception:
        if runner is not None:
            runner.close()
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    log.info("built %s in %.1f s", ", ".join(f"{s} {n}" for s, n in counts.items()), time.perf_counter() - t0)
    return counts
