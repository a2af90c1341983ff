"""A Numba reader of the common SpatialThinker response, and the paper preset scored end to end on it.

:func:`paper_batch` scores a batch of ASCII responses under the ``spatialthinker`` preset with exact label
similarity in one call: tag scan, scene JSON, id and box checks, answer, count and spatial terms. It reads only the
shape models write almost always -- the eight tags once each in template order, a scene ``{"objects": [{"id",
"bbox"}...], "relationships": [{"subject", "predicate", "object"}...]}`` whose strings have no escapes, boxes of
plain JSON numbers that are valid corners -- and hands every other response back (``status`` 1) to the Python
reading of :mod:`rewards.presets.spatialthinker` (:mod:`rewards.template`), which owns the rules and their error
texts. So the fast path only has to agree with that reading on what it accepts, and ``tests/rewards/test_scan.py``
checks that it does, bit for bit, on mutated responses. The count, gating and total formulas are the compiled ones
of :mod:`rewards.fast.terms`, which the Python reading calls too.

Numbers are read with Clinger's exact fast path (at most 15 significant digits, a power of ten up to 1e22), which
rounds as ``float()`` does; longer or larger numbers go back to Python.

Text is indexed as ``b[_U(p)]`` (an unsigned index) in the byte loops: Numba adds a negative-index wraparound to every
signed index it cannot prove non-negative, and in these loops that costs more than the work itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rewards.constants import MODE_PAPER, PAD
from rewards.constants import SCAN_FALLBACK as FALLBACK
from rewards.constants import SCAN_OK as OK
from rewards.fast.kernels import spatial_batch
from rewards.fast.terms import paper_count, paper_total, spatial_wanted, with_spatial

_POW10 = np.array([10.0**i for i in range(23)])  # exactly representable: 1e0 .. 1e22

_U = np.uint64
_ONES = _U(0x0101010101010101)
_HIGH = _U(0x8080808080808080)
_LESS = _U(0x3C3C3C3C3C3C3C3C)
_FNV_OFFSET = _U(14695981039346656037)
_FNV_PRIME = _U(1099511628211)


def padded(data: bytes):
    """``data`` as a uint8 array followed by :data:`PAD` zero bytes (what the kernels read)."""
    out = np.zeros(len(data) + PAD, dtype=np.uint8)
    out[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return out


@njit(cache=True)
def _words(b):
    """``b`` (padded) seen as little-endian uint64 words."""
    return b[: (b.shape[0] // 8) * 8].view(np.uint64)


@njit(cache=True)
def _word(b64, p):
    """The 8 bytes from byte ``p`` as one little-endian uint64, at any alignment."""
    i = p >> 3
    shift = _U((p & 7) * 8)
    if shift == 0:
        return b64[i]
    return (b64[i] >> shift) | (b64[i + 1] << (_U(64) - shift))


@njit(cache=True)
def _has_byte(x, pattern):
    """Nonzero when a byte of ``x`` equals the byte repeated in ``pattern``; its lowest set bit marks the first."""
    y = x ^ pattern
    return (y - _ONES) & ~y & _HIGH


@njit(cache=True)
def _first_marked(mask):
    """Byte index (0-7) of the lowest marked byte of a nonzero ``mask``."""
    k = 0
    while (mask >> _U(8 * k)) & _U(0x80) == 0:
        k += 1
    return k


# the eight template tags, in template order; tag t is "<name>" for even t, "</name>" for odd t
_NAMES = (b"observe", b"scene", b"think", b"answer")
_TAG_BYTES = np.zeros((4, 8), dtype=np.uint8)
_TAG_LENS = np.array([len(n) for n in _NAMES], dtype=np.int64)
for _i, _n in enumerate(_NAMES):
    _TAG_BYTES[_i, : len(_n)] = np.frombuffer(_n, dtype=np.uint8)

# scene keys this reader knows; any other key sends the response back
KEY_OTHER, KEY_OBJECTS, KEY_RELATIONSHIPS, KEY_ID, KEY_BBOX, KEY_SUBJECT, KEY_PREDICATE, KEY_OBJECT = range(8)
_KEYS = (b"", b"objects", b"relationships", b"id", b"bbox", b"subject", b"predicate", b"object")
_KEY_BYTES = np.zeros((len(_KEYS), 16), dtype=np.uint8)
_KEY_LENS = np.array([len(k) for k in _KEYS], dtype=np.int64)
for _i, _k in enumerate(_KEYS):
    _KEY_BYTES[_i, : len(_k)] = np.frombuffer(_k, dtype=np.uint8) if _k else 0
_KEY_QUOTED_LENS = _KEY_LENS + 2
_KEY_WORDS = np.zeros((len(_KEYS), 2), dtype=np.uint64)  # '"key"' as two little-endian words, and their masks
_KEY_MASKS = np.zeros((len(_KEYS), 2), dtype=np.uint64)
for _i, _k in enumerate(_KEYS):
    _q = (b'"' + _k + b'"').ljust(16, b"\0")
    _m = (b"\xff" * (len(_k) + 2)).ljust(16, b"\0")
    _KEY_WORDS[_i] = np.frombuffer(_q, dtype="<u8")
    _KEY_MASKS[_i] = np.frombuffer(_m, dtype="<u8")


@njit(cache=True)
def _tag_at(b, p, end):
    """Tag number (0-7) of a template tag starting at ``b[p] == '<'``, -1 if none (the regex
    ``</?(?:observe|scene|think|answer)>``); also the position after it."""
    q = p + 1
    closing = 0
    if q < end and b[_U(q)] == 47:  # '/'
        closing = 1
        q += 1
    if q >= end:
        return -1, p
    c = b[_U(q)]
    if c == 111:  # o
        name = 0
    elif c == 115:  # s
        name = 1
    elif c == 116:  # t
        name = 2
    elif c == 97:  # a
        name = 3
    else:
        return -1, p
    n = _TAG_LENS[name]
    if q + n >= end:
        return -1, p
    for i in range(n):
        if b[_U(q + i)] != _TAG_BYTES[name, i]:
            return -1, p
    if b[_U(q + n)] != 62:  # '>'
        return -1, p
    return 2 * name + closing, q + n + 1


@njit(cache=True)
def _ws(b, p, end):
    """Position of the first byte at or after ``p`` that is not JSON whitespace."""
    while p < end:
        c = b[_U(p)]
        if c == 32 or c == 10 or c == 13 or c == 9:
            p += 1
        else:
            break
    return p


@njit(cache=True)
def _string(b, p, end):
    """A JSON string at ``b[p] == '"'`` without escapes or control bytes: ``(start, stop, after)``, ``after`` -1
    when it is not one."""
    q = p + 1
    while q < end:
        c = b[_U(q)]
        if c == 34:  # '"'
            return p + 1, q, q + 1
        if c == 92 or c < 32:  # a backslash or a control byte: the Python reading decides
            return 0, 0, -1
        q += 1
    return 0, 0, -1


@njit(cache=True)
def _key(b, b64, p, end):
    """A known key at ``b[p]``, then the ``:``: ``(key number, position after the colon)``; after -1 if not."""
    if p + 1 >= end or b[p] != 34:
        return KEY_OTHER, -1
    first = b[p + 1]
    w0 = _word(b64, p)
    for k in range(1, _KEY_LENS.shape[0]):
        n = _KEY_QUOTED_LENS[k]
        # '"key"' compared 8 bytes at a time: the closing quote tells "object" from "objects"
        if (
            _KEY_BYTES[k, 0] == first
            and p + n <= end
            and (w0 & _KEY_MASKS[k, 0]) == _KEY_WORDS[k, 0]
            and (n <= 8 or (_word(b64, p + 8) & _KEY_MASKS[k, 1]) == _KEY_WORDS[k, 1])
        ):
            q = _ws(b, p + n, end)
            if q >= end or b[q] != 58:  # ':'
                return KEY_OTHER, -1
            return k, _ws(b, q + 1, end)
    return KEY_OTHER, -1


@njit(cache=True)
def _id_form(b, s, e):
    """True when ``b[s:e]`` is the paper's id form ``[a-zA-Z_]+\\.\\d+`` (ASCII digits)."""
    i = s
    while i < e:
        c = b[_U(i)]
        if (65 <= c <= 90) or (97 <= c <= 122) or c == 95:
            i += 1
        else:
            break
    if i == s or i >= e or b[_U(i)] != 46:  # at least one letter, then '.'
        return False
    i += 1
    if i >= e:
        return False
    while i < e:
        if not (48 <= b[_U(i)] <= 57):
            return False
        i += 1
    return True


@njit(cache=True)
def _number(b, p, end):
    """A JSON number at ``b[p]``: ``(value, after)`` with ``after`` -1 when it is not one this reader takes (not a
    number, more than 15 significant digits, a power of ten beyond 1e22). The value is what ``float()`` gives."""
    neg = False
    if p < end and b[_U(p)] == 45:  # '-'
        neg = True
        p += 1
    if p >= end:
        return 0.0, -1
    m = 0
    digits = 0
    c = b[_U(p)]
    if c == 48:  # a leading 0 stands alone ("01" is not JSON: the caller then sees no delimiter)
        p += 1
    elif 49 <= c <= 57:
        while p < end and 48 <= b[_U(p)] <= 57:
            m = m * 10 + (b[_U(p)] - 48)
            digits += 1
            p += 1
        if digits > 15:
            return 0.0, -1
    else:
        return 0.0, -1
    is_int = True
    e10 = 0
    if p < end and b[_U(p)] == 46:  # '.'
        is_int = False
        p += 1
        start = p
        while p < end and 48 <= b[_U(p)] <= 57:
            m = m * 10 + (b[_U(p)] - 48)
            if m != 0:
                digits += 1
            e10 -= 1
            p += 1
            if digits > 15 or p - start > 30:
                return 0.0, -1
        if p == start:
            return 0.0, -1
    if p < end and (b[_U(p)] == 101 or b[_U(p)] == 69):  # 'e' / 'E'
        is_int = False
        p += 1
        eneg = False
        if p < end and (b[_U(p)] == 43 or b[_U(p)] == 45):
            eneg = b[_U(p)] == 45
            p += 1
        start = p
        ev = 0
        while p < end and 48 <= b[_U(p)] <= 57:
            ev = ev * 10 + (b[_U(p)] - 48)
            p += 1
            if p - start > 4:
                return 0.0, -1
        if p == start:
            return 0.0, -1
        e10 += -ev if eneg else ev
    if m == 0:
        # JSON "-0" is the integer 0; "-0.0" and "-0e1" are the float -0.0
        return (-0.0 if (neg and not is_int) else 0.0), p
    if e10 < -22 or e10 > 22:
        return 0.0, -1
    v = float(m)
    if e10 > 0:
        v = v * _POW10[e10]
    elif e10 < 0:
        v = v / _POW10[-e10]
    return (-v if neg else v), p


@njit(cache=True)
def _bbox(b, p, end, boxes, row):
    """A ``[x1, y1, x2, y2]`` of four numbers at ``b[p] == '['`` into ``boxes[row]``; position after it, -1 if not
    taken (including corners out of order: the Python reading orders its errors)."""
    if p >= end or b[_U(p)] != 91:
        return -1
    p = _ws(b, p + 1, end)
    for i in range(4):
        v, p = _number(b, p, end)
        if p < 0:
            return -1
        boxes[row, i] = v
        p = _ws(b, p, end)
        if p >= end:
            return -1
        if i < 3:
            if b[_U(p)] != 44:  # ','
                return -1
            p = _ws(b, p + 1, end)
        elif b[_U(p)] != 93:  # ']'
            return -1
    if not (boxes[row, 0] <= boxes[row, 2] and boxes[row, 1] <= boxes[row, 3]):
        return -1
    return p + 1


@njit(cache=True)
def _object(b, b64, p, end, boxes, ids, row):
    """``{"id": "name.N", "bbox": [...]}`` (keys in either order, each once, nothing else) at ``b[p]``."""
    if p >= end or b[_U(p)] != 123:  # '{'
        return -1
    p = _ws(b, p + 1, end)
    seen_id = False
    seen_box = False
    while True:
        key, p = _key(b, b64, p, end)
        if p < 0:
            return -1
        if key == KEY_ID and not seen_id:
            if p >= end or b[_U(p)] != 34:
                return -1
            s, e, p = _string(b, p, end)
            if p < 0 or not _id_form(b, s, e):
                return -1
            ids[row, 0] = s
            ids[row, 1] = e
            seen_id = True
        elif key == KEY_BBOX and not seen_box:
            p = _bbox(b, p, end, boxes, row)
            if p < 0:
                return -1
            seen_box = True
        else:
            return -1
        p = _ws(b, p, end)
        if p >= end:
            return -1
        if b[_U(p)] == 125:  # '}'
            return p + 1 if (seen_id and seen_box) else -1
        if b[_U(p)] != 44:
            return -1
        p = _ws(b, p + 1, end)


@njit(cache=True)
def _relationship(b, b64, p, end):
    """``{"subject": id, "predicate": str, "object": id}`` (any order, each once, nothing else) at ``b[p]``."""
    if p >= end or b[_U(p)] != 123:
        return -1
    p = _ws(b, p + 1, end)
    seen = 0
    while True:
        key, p = _key(b, b64, p, end)
        if p < 0 or key < KEY_SUBJECT:
            return -1
        bit = 1 << (key - KEY_SUBJECT)
        if seen & bit or p >= end or b[_U(p)] != 34:
            return -1
        s, e, p = _string(b, p, end)
        if p < 0 or (key != KEY_PREDICATE and not _id_form(b, s, e)):
            return -1
        seen |= bit
        p = _ws(b, p, end)
        if p >= end:
            return -1
        if b[_U(p)] == 125:
            return p + 1 if seen == 7 else -1
        if b[_U(p)] != 44:
            return -1
        p = _ws(b, p + 1, end)


@njit(cache=True)
def _after_element(b, p, end):
    """After an array element at ``p``: ``(position of the next element, False)`` after a ``,``, ``(position after
    the ], True)`` at the end; position -1 for anything else."""
    p = _ws(b, p, end)
    if p >= end:
        return -1, False
    if b[_U(p)] == 93:  # ']'
        return p + 1, True
    if b[_U(p)] != 44:  # ','
        return -1, False
    return _ws(b, p + 1, end), False


@njit(cache=True)
def _scene(b, b64, p, end, boxes, ids, row0):
    """The scene JSON in ``b[p:end]``: ``(n_objects, n_relationships, has_objects)``, n_objects -1 if not taken.
    Objects go to ``boxes``/``ids`` from ``row0``; their ids are checked unique."""
    cap = boxes.shape[0]
    p = _ws(b, p, end)
    if p >= end or b[_U(p)] != 123:
        return -1, 0, False
    p = _ws(b, p + 1, end)
    n_obj = 0
    n_rel = 0
    seen_objects = False
    seen_rels = False
    while True:
        key, p = _key(b, b64, p, end)
        if p < 0 or p >= end or b[_U(p)] != 91:
            return -1, 0, False
        p = _ws(b, p + 1, end)
        objects = key == KEY_OBJECTS
        if not ((objects and not seen_objects) or (key == KEY_RELATIONSHIPS and not seen_rels)):
            return -1, 0, False
        seen_objects |= objects
        seen_rels |= not objects
        done = p < end and b[_U(p)] == 93  # ']': an empty list
        if done:
            p += 1
        while not done:
            if objects:
                if row0 + n_obj >= cap:
                    return -1, 0, False
                p = _object(b, b64, p, end, boxes, ids, row0 + n_obj)
                n_obj += 1
            else:
                p = _relationship(b, b64, p, end)
                n_rel += 1
            if p < 0:
                return -1, 0, False
            p, done = _after_element(b, p, end)
            if p < 0:
                return -1, 0, False
        p = _ws(b, p, end)
        if p >= end:
            return -1, 0, False
        if b[_U(p)] == 125:
            p = _ws(b, p + 1, end)
            break
        if b[_U(p)] != 44:
            return -1, 0, False
        p = _ws(b, p + 1, end)
    if p != end:
        return -1, 0, False
    # ids unique (the Python reading reports duplicates)
    for i in range(row0, row0 + n_obj):
        li = ids[i, 1] - ids[i, 0]
        for j in range(row0, i):
            if ids[j, 1] - ids[j, 0] == li:
                same = True
                for t in range(li):
                    if b[ids[i, 0] + t] != b[ids[j, 0] + t]:
                        same = False
                        break
                if same:
                    return -1, 0, False
    return n_obj, n_rel, seen_objects


@njit(cache=True)
def _is_space(c):
    """``str.isspace`` for an ASCII byte."""
    return c == 32 or (9 <= c <= 13) or (28 <= c <= 31)


@njit(cache=True)
def _answer_matches(b, s, e, key, k0, k1):
    """The paper's accuracy rule on ASCII: ``b[s:e].strip().lower() == key[k0:k1]``."""
    while s < e and _is_space(b[s]):
        s += 1
    while e > s and _is_space(b[e - 1]):
        e -= 1
    return e - s == k1 - k0 and _lower_equals(b, s, e, key, k0, False)


@njit(cache=True)
def _name_span(b, s):
    """The paper's name of the id at ``b[s:]`` (``[a-zA-Z_]+.N``: the part before the dot, ``_`` as spaces,
    stripped, lower-cased) as the span ``(start, stop)`` of its letters once the outer underscores are dropped."""
    dot = s
    while b[dot] != 46:
        dot += 1
    while s < dot and b[s] == 95:
        s += 1
    while dot > s and b[dot - 1] == 95:
        dot -= 1
    return s, dot


@njit(cache=True)
def _lower_equals(b, s, e, ref, r0, underscore_as_space):
    """``b[s:e]`` lower-cased (and ``_`` read as a space when ``underscore_as_space``) equals
    ``ref[r0:r0+e-s]``."""
    for i in range(e - s):
        c = b[s + i]
        if underscore_as_space and c == 95:
            c = 32
        elif 65 <= c <= 90:
            c += 32
        if c != ref[r0 + i]:
            return False
    return True


@njit(cache=True)
def _scan(b, b64, r0, r1, tags):
    """The eight template tags of ``b[r0:r1]`` in template order, each once: fills ``tags[t] = (start, end)``;
    False when the tags are anything else."""
    t = 0
    p = r0
    while p < r1:
        while p + 8 <= r1:  # to the next '<', 8 bytes at a time
            mask = _has_byte(_word(b64, p), _LESS)
            if mask:
                p += _first_marked(mask)
                break
            p += 8
        if p >= r1:
            break
        if b[p] == 60:  # '<'
            tag, q = _tag_at(b, p, r1)
            if tag >= 0:
                if tag != t:
                    return False
                tags[t, 0] = p
                tags[t, 1] = q
                t += 1
                p = q
                continue
        p += 1
    return t == 8


@njit(cache=True)
def paper_batch(
    buf,
    rstart,
    grow,
    g_off,
    g_n,
    g_nrel,
    gboxes,
    gcodes,
    gnames,
    gname_start,
    gkeys,
    gkey_start,
    sizes,
    weights,
    gate_spatial,
):
    """Score K ASCII responses ``buf[rstart[k]:rstart[k+1]]`` with the paper preset and exact name similarity.

    Response k is scored against ground-truth row ``grow[k]``: objects ``g_off[g]:g_off[g]+g_n[g]`` of
    ``gboxes`` (pixel corners) / ``gcodes`` (name codes) / ``gname_start`` (spans of their paper names in
    ``gnames``, UTF-8), ``g_nrel[g]`` relations and the accuracy key ``gkeys[gkey_start[g]:gkey_start[g+1]]``;
    ``sizes[k]`` is the image (W, H). ``weights`` = (w_format, w_count, w_accuracy, w_spatial, lambda_obj,
    lambda_rel, lambda_semantic, lambda_spatial).

    Returns ``(status, total, count, accuracy, spatial)``; rows with ``status != OK`` are left to the caller.
    The format term of an OK row is 1. Same operations, in the same order, as the Python path.
    """
    k_n = rstart.shape[0] - 1
    status = np.full(k_n, FALLBACK, dtype=np.int8)
    total = np.zeros(k_n)
    count = np.zeros(k_n)
    acc = np.zeros(k_n)
    spatial = np.zeros(k_n)
    # every object takes at least 26 bytes of text, so this bounds the rows (pages never touched cost nothing)
    cap = buf.shape[0] // 16 + 1
    pboxes = np.empty((cap, 4))
    ids = np.empty((cap, 2), dtype=np.int64)
    pcodes = np.empty(cap, dtype=np.int64)
    pstart = np.zeros(k_n + 1, dtype=np.int64)
    need = np.zeros(k_n, dtype=np.bool_)
    goff = np.zeros(k_n, dtype=np.int64)
    gcount = np.zeros(k_n, dtype=np.int64)
    tags = np.empty((8, 2), dtype=np.int64)
    b64 = _words(buf)
    wf, wc, wa, ws, lo, lr, lam_sem, lam_sp = weights
    rows = 0
    for k in range(k_n):
        pstart[k + 1] = rows
        if not _scan(buf, b64, rstart[k], rstart[k + 1], tags):
            continue
        n, n_rel, has_objects = _scene(buf, b64, tags[2, 1], tags[3, 0], pboxes, ids, rows)
        if n < 0:
            continue
        g = grow[k]
        a = 1.0 if _answer_matches(buf, tags[6, 1], tags[7, 0], gkeys, gkey_start[g], gkey_start[g + 1]) else 0.0
        m = g_n[g]
        g0 = g_off[g]
        for i in range(n):
            code = -1
            s, e = _name_span(buf, ids[rows + i, 0])
            for j in range(m):
                n0 = gname_start[g0 + j]
                if gname_start[g0 + j + 1] - n0 == e - s and _lower_equals(buf, s, e, gnames, n0, True):
                    code = gcodes[g0 + j]
                    break
            pcodes[rows + i] = code
        c = paper_count(has_objects, n, m, n_rel, g_nrel[g], lo, lr)
        status[k] = OK
        count[k] = c
        acc[k] = a
        total[k] = paper_total(1.0, c, a, wf, wc, wa)
        need[k] = spatial_wanted(a, gate_spatial)
        goff[k] = g0
        gcount[k] = m
        rows += n
        pstart[k + 1] = rows
    s_values, _ = spatial_batch(
        pboxes,
        pcodes,
        pstart,
        need,
        goff,
        gcount,
        gboxes,
        gcodes,
        sizes,
        np.zeros(1),
        np.full(k_n, -1, dtype=np.int64),
        MODE_PAPER,
        lam_sem,
        lam_sp,
    )
    for k in range(k_n):
        if status[k] == OK and need[k]:
            s = min(max(s_values[k], 0.0), 1.0)
            spatial[k] = s
            total[k] = with_spatial(total[k], s, acc[k], ws, gate_spatial)
    return status, total, count, acc, spatial


# --------------------------------------------------------------------------------------------------------------
# JSONL lines of the scoring CLI: {"response": str, "ground_truth": str, "image_size": [W, H], ...other fields}

LINE_KEY_OTHER, LINE_KEY_RESPONSE, LINE_KEY_GT, LINE_KEY_SIZE, LINE_KEY_OUTPUT = range(5)
_LINE_KEYS = (b"response", b"ground_truth", b"image_size", b"format", b"count", b"accuracy", b"spatial", b"total")
_LINE_KEY_BYTES = np.zeros((len(_LINE_KEYS) + 1, 16), dtype=np.uint8)
_LINE_KEY_LENS = np.zeros(len(_LINE_KEYS) + 1, dtype=np.int64)
for _i, _k in enumerate((*_LINE_KEYS, b"error")):
    _LINE_KEY_BYTES[_i, : len(_k)] = np.frombuffer(_k, dtype=np.uint8)
    _LINE_KEY_LENS[_i] = len(_k)

_ESCAPES = np.zeros(128, dtype=np.uint8)  # byte after a backslash -> the byte it stands for (0: not an escape)
for _c, _v in zip(b'"\\/bfnrt', b'"\\/\b\f\n\r\t'):
    _ESCAPES[_c] = _v
_STRING_CLASS = np.zeros(256, dtype=np.uint8)  # inside a JSON string: 0 plain, 1 '"', 2 '\\', 3 control or non-ASCII
_STRING_CLASS[34] = 1
_STRING_CLASS[92] = 2
_STRING_CLASS[:32] = 3
_STRING_CLASS[128:] = 3


@njit(cache=True)
def _hex_value(c):
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


@njit(cache=True)
def _escape(b, q, end):
    """The JSON escape at ``b[q] == '\\'``: ``(value, length)`` -- the byte or \\u code point it stands for and
    the bytes it takes; value -1 when it is not a valid escape."""
    if q + 1 >= end:
        return -1, 0
    e = b[q + 1]
    if e == 117:  # \uXXXX
        if q + 5 >= end:
            return -1, 0
        v = 0
        for i in range(2, 6):
            d = _hex_value(b[q + i])
            if d < 0:
                return -1, 0
            v = v * 16 + d
        return v, 6
    if e >= 128 or _ESCAPES[e] == 0:
        return -1, 0
    return np.int64(_ESCAPES[e]), 2


@njit(cache=True)
def _skip_string(b, p, end):
    """Past the ASCII JSON string at ``b[p] == '"'`` (escapes checked); -1 if it is not one (or not ASCII).

    The hot loops of the line reader index with unsigned integers: Numba then skips the negative-index wraparound
    it adds to every signed index, which here is most of the cost."""
    one = _U(1)
    q = _U(p + 1)
    stop = _U(end)
    while q < stop:
        kind = _STRING_CLASS[b[q]]
        if kind == 0:
            q += one
            continue
        if kind == 1:
            return np.int64(q) + 1
        if kind == 3:
            return -1
        v, n = _escape(b, np.int64(q), end)
        if v < 0:
            return -1
        q += _U(n)
    return -1


@njit(cache=True)
def _hash_span(b, b64, s, e):
    """FNV-1a over ``b[s:e]``, 8 bytes at a time (used to group equal ground-truth strings; equality is then
    checked byte for byte)."""
    h = _FNV_OFFSET
    while s + 8 <= e:
        h = (h ^ _word(b64, s)) * _FNV_PRIME
        s += 8
    while s < e:
        h = (h ^ _U(b[s])) * _FNV_PRIME
        s += 1
    return h


@njit(cache=True)
def _skip_digits(b, p, end):
    """Past one or more ASCII digits at ``b[p]``; -1 if there is none."""
    start = p
    while p < end and 48 <= b[p] <= 57:
        p += 1
    return p if p > start else -1


@njit(cache=True)
def _skip_number(b, p, end):
    """Past a JSON number (the grammar, any size) at ``b[p]``; -1 if it is not one."""
    if p < end and b[p] == 45:
        p += 1
    if p >= end:
        return -1
    if b[p] == 48:
        p += 1
    elif 49 <= b[p] <= 57:
        p = _skip_digits(b, p, end)
    else:
        return -1
    if p < end and b[p] == 46:  # a fraction needs a digit
        p = _skip_digits(b, p + 1, end)
        if p < 0:
            return -1
    if p < end and (b[p] == 101 or b[p] == 69):  # so does an exponent
        p += 1
        if p < end and (b[p] == 43 or b[p] == 45):
            p += 1
        p = _skip_digits(b, p, end)
    return p


@njit(cache=True)
def _skip_literal(b, p, end):
    """Past ``true``, ``false`` or ``null`` at ``b[p]``; -1 otherwise (NaN/Infinity go back to Python too)."""
    c = b[p]
    if c == 116 and p + 4 <= end and b[p + 1] == 114 and b[p + 2] == 117 and b[p + 3] == 101:
        return p + 4
    if c == 110 and p + 4 <= end and b[p + 1] == 117 and b[p + 2] == 108 and b[p + 3] == 108:
        return p + 4
    if c == 102 and p + 5 <= end and b[p + 1] == 97 and b[p + 2] == 108 and b[p + 3] == 115 and b[p + 4] == 101:
        return p + 5
    return -1


@njit(cache=True)
def _member_key(b, p, end):
    """An object key string and its colon at ``b[p]``: position after the colon (and whitespace), -1 if not."""
    if p >= end or b[p] != 34:
        return -1
    p = _skip_string(b, p, end)
    if p < 0:
        return -1
    p = _ws(b, p, end)
    if p >= end or b[p] != 58:
        return -1
    return _ws(b, p + 1, end)


@njit(cache=True)
def _skip_value(b, p, end, stack):
    """Past any JSON value at ``b[p]`` (checked against the grammar, nesting up to ``len(stack)``); -1 if it is not
    one this reader takes."""
    depth = 0
    while True:
        p = _ws(b, p, end)
        if p >= end:
            return -1
        c = b[p]
        opened = False
        if c == 123 or c == 91:  # '{' or '['
            q = _ws(b, p + 1, end)
            if q < end and b[q] == c + 2:  # '}' / ']': empty
                p = q + 1
            else:
                if depth == stack.shape[0]:
                    return -1
                stack[depth] = c
                depth += 1
                p = _member_key(b, q, end) if c == 123 else q
                if p < 0:
                    return -1
                opened = True
        elif c == 34:
            p = _skip_string(b, p, end)
        elif c == 45 or 48 <= c <= 57:
            p = _skip_number(b, p, end)
        else:
            p = _skip_literal(b, p, end)
        if p < 0:
            return -1
        if opened:
            continue
        # a value ended: close containers until one continues with ','
        while True:
            if depth == 0:
                return p
            p = _ws(b, p, end)
            if p >= end:
                return -1
            top = stack[depth - 1]
            if b[p] == 44:
                p = _ws(b, p + 1, end)
                if top == 123:
                    p = _member_key(b, p, end)
                    if p < 0:
                        return -1
                break
            if b[p] == top + 2:
                depth -= 1
                p += 1
                continue
            return -1


@njit(cache=True)
def _line_key(b, p, end):
    """The key at ``b[p] == '"'``: (LINE_KEY_*, position after the colon); position -1 if not taken."""
    q = _skip_string(b, p, end)
    if q < 0:
        return LINE_KEY_OTHER, -1
    s = p + 1
    n = q - 1 - s
    key = LINE_KEY_OTHER
    for i in range(s, q - 1):
        if b[i] == 92:  # an escaped key may spell a known one: Python decides
            return LINE_KEY_OTHER, -1
    for k in range(_LINE_KEY_LENS.shape[0]):
        if _LINE_KEY_LENS[k] == n:
            same = True
            for i in range(n):
                if b[s + i] != _LINE_KEY_BYTES[k, i]:
                    same = False
                    break
            if same:
                key = min(k + 1, LINE_KEY_OUTPUT)
                break
    q = _ws(b, q, end)
    if q >= end or b[q] != 58:
        return key, -1
    return key, _ws(b, q + 1, end)


@njit(cache=True)
def _unescape(b, p, end, out, o):
    """The ASCII JSON string at ``b[p] == '"'`` decoded into ``out[o:]``: (position after it, end in ``out``);
    position -1 if it is not one (or decodes to non-ASCII). Unsigned indices, as in :func:`_skip_string`."""
    one = _U(1)
    q = _U(p + 1)
    stop = _U(end)
    w = _U(o)
    while q < stop:
        c = b[q]
        kind = _STRING_CLASS[c]
        if kind == 0:
            out[w] = c
            w += one
            q += one
            continue
        if kind == 1:
            return np.int64(q) + 1, np.int64(w)
        if kind == 3:
            return -1, np.int64(w)
        v, n = _escape(b, np.int64(q), end)
        if v < 0 or v >= 128:
            return -1, np.int64(w)
        out[w] = v
        w += one
        q += _U(n)
    return -1, np.int64(w)


@njit(cache=True)
def _positive_int(b, p, end):
    """A JSON integer 1 .. 10**15 - 1 at ``b[p]``: (value, position after); position -1 otherwise."""
    v = 0
    q = p
    while q < end and 48 <= b[q] <= 57:
        v = v * 10 + (b[q] - 48)
        q += 1
    if q == p or b[p] == 48 or q - p > 15:
        return 0, -1
    if q < end and (b[q] == 46 or b[q] == 101 or b[q] == 69):  # a float: Python decides
        return 0, -1
    return v, q


_RECENT = 256
"""Slots of the table of ground-truth strings already read in a block (GRPO writes n responses per prompt)."""


@njit(cache=True)
def _recent_slot(b64, p, end):
    """Slot of the string text starting at ``p`` by its first 64 bytes; -1 when it is shorter."""
    if p + 64 > end:
        return -1
    h = _FNV_OFFSET
    for i in range(8):
        h = (h ^ _word(b64, p + 8 * i)) * _FNV_PRIME
    return np.int64(h >> _U(56))


@njit(cache=True)
def _equal_bytes(b, b64, a, c, n):
    """``b[a:a+n] == b[c:c+n]``, compared 8 bytes at a time."""
    t = 0
    while t + 8 <= n:
        if _word(b64, a + t) != _word(b64, c + t):
            return False
        t += 8
    while t < n:
        if b[a + t] != b[c + t]:
            return False
        t += 1
    return True


@njit(cache=True)
def _same_string(b, b64, p, end, s0, s1):
    """Position after the string whose text starts at ``p`` when that text is ``b[s0:s1]`` (a string read before)
    and its closing quote follows; -1 otherwise."""
    n = s1 - s0
    if n < 0 or p + n >= end or b[p + n] != 34 or not _equal_bytes(b, b64, p, s0, n):
        return -1
    return p + n + 1


@njit(cache=True)
def _image_size(b, p, end):
    """``[W, H]`` of two integers 1 .. 10**15 - 1 at ``b[p]``: ``(W, H, position after)``; position -1 if not."""
    if b[p] != 91:  # '['
        return 0, 0, -1
    p += 1
    wh = (0, 0)
    for k in range(2):
        v, p = _positive_int(b, _ws(b, p, end), end)
        if p < 0:
            return 0, 0, -1
        p = _ws(b, p, end)
        if p >= end or b[p] != (44 if k == 0 else 93):  # ',' then ']'
            return 0, 0, -1
        p += 1
        wh = (v, wh[1]) if k == 0 else (wh[0], v)
    return wh[0], wh[1], p


@njit(cache=True)
def read_lines(buf, lstart):
    """Read JSONL lines ``buf[lstart[i]:lstart[i+1]]`` (``buf`` padded, see :func:`padded`) of the common form:
    one ASCII JSON object ending in ``}\\n`` with string ``response`` and ``ground_truth``, ``image_size`` two
    positive integers, no output key, any other fields.

    Returns ``(taken, responses, rstart, gspan, ghash, sizes)``: ``taken`` the line numbers read (in order), for
    each of them its decoded response ``responses[rstart[j]:rstart[j+1]]`` (padded), the ground truth's raw
    (escaped) bytes ``buf[gspan[j, 0]:gspan[j, 1]]`` and their hash, and ``sizes[j]`` = (W, H). Other lines are
    left to the Python path.
    """
    n_lines = lstart.shape[0] - 1
    b64 = _words(buf)
    out = np.empty(buf.shape[0] + PAD, dtype=np.uint8)
    taken = np.empty(n_lines, dtype=np.int64)
    rstart = np.zeros(n_lines + 1, dtype=np.int64)
    gspan = np.empty((n_lines, 2), dtype=np.int64)
    ghash = np.empty(n_lines, dtype=np.uint64)
    sizes = np.empty((n_lines, 2))
    stack = np.empty(64, dtype=np.uint8)
    recent = np.zeros((_RECENT, 3), dtype=np.int64)  # ground-truth strings seen: (start, stop, hash) by slot
    recent[:, 1] = -1
    j = 0
    o = 0
    for i in range(n_lines):
        p = lstart[i]
        end = lstart[i + 1] - 1  # the '\n'
        if end - p < 2 or buf[end] != 10 or buf[end - 1] != 125 or buf[p] != 123:
            continue
        p = _ws(buf, p + 1, end)
        o_line = o
        seen = 0
        w = h = 0
        g0 = g1 = 0
        hv = _FNV_OFFSET
        ok = True
        while ok:
            if p >= end or buf[p] != 34:
                ok = False
                break
            key, p = _line_key(buf, p, end)
            if p < 0 or key == LINE_KEY_OUTPUT:
                ok = False
                break
            if key == LINE_KEY_OTHER:
                p = _skip_value(buf, p, end, stack)
            else:
                bit = 1 << key
                if seen & bit or p >= end:
                    ok = False
                    break
                seen |= bit
                if key == LINE_KEY_RESPONSE:
                    if buf[p] != 34:
                        ok = False
                        break
                    p, o = _unescape(buf, p, end, out, o)
                elif key == LINE_KEY_GT:
                    if buf[p] != 34:
                        ok = False
                        break
                    g0 = p + 1
                    slot = _recent_slot(b64, g0, end)
                    p = _same_string(buf, b64, g0, end, recent[slot, 0], recent[slot, 1]) if slot >= 0 else -1
                    if p >= 0:  # the ground truth of an earlier line, byte for byte
                        hv = _U(recent[slot, 2])
                    else:
                        p = _skip_string(buf, g0 - 1, end)
                        hv = _hash_span(buf, b64, g0, p - 1) if p >= 0 else _FNV_OFFSET
                        if p >= 0 and slot >= 0:
                            recent[slot, 0] = g0
                            recent[slot, 1] = p - 1
                            recent[slot, 2] = np.int64(hv)
                    g1 = p - 1
                else:
                    w, h, p = _image_size(buf, p, end)
            if p < 0:
                ok = False
                break
            p = _ws(buf, p, end)
            if p < end and buf[p] == 44:
                p = _ws(buf, p + 1, end)
                continue
            # the object must close on the line's last byte before the newline
            ok = p == end - 1 and seen == 14
            break
        if not ok:
            o = o_line
            continue
        taken[j] = i
        rstart[j + 1] = o
        gspan[j, 0] = g0
        gspan[j, 1] = g1
        ghash[j] = hv
        sizes[j, 0] = w
        sizes[j, 1] = h
        j += 1
    out[o : o + PAD] = 0
    return taken[:j], out[: o + PAD], rstart[: j + 1], gspan[:j], ghash[:j], sizes[:j]


@njit(cache=True)
def same_bytes(buf, spans, ref):
    """``buf[spans[j, 0]:spans[j, 1]] == buf[spans[ref[j], 0]:spans[ref[j], 1]]`` for every j (``buf`` padded)."""
    b64 = _words(buf)
    n = spans.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for j in range(n):
        a = spans[j, 0]
        c = spans[ref[j], 0]
        length = spans[j, 1] - a
        out[j] = length == spans[ref[j], 1] - c and (a == c or _equal_bytes(buf, b64, a, c, length))
    return out


_TAIL_PARTS = (b', "format": ', b', "count": ', b', "accuracy": ', b', "spatial": ', b', "total": ', b"}\n")
_TAIL_BYTES = np.frombuffer(b"".join(_TAIL_PARTS), dtype=np.uint8).copy()
_TAIL_START = np.cumsum(np.array([0] + [len(p) for p in _TAIL_PARTS], dtype=np.int64))


@njit(cache=True)
def write_lines(buf, lstart, kind, ref, numbers, nstart, lit, litstart):
    """The output of a block of lines, in order. Line i is written per ``kind[i]``, with r = ``ref[i]``:

    * 0 -- its text without the closing ``}\\n``, the five scores (format, count, accuracy, spatial, total; score x
      is ``numbers[nstart[x]:nstart[x+1]-1]``, x = 5r .. 5r+4: the text of a JSON array without its brackets and
      commas) and ``}\\n``;
    * 1 -- the literal ``lit[litstart[r]:litstart[r+1]]`` (a whole output line);
    * 2 -- its text without ``}\\n``, then that literal (a tail);
    * 3 -- nothing (a blank line).
    """
    n = lstart.shape[0] - 1
    size = 0
    for i in range(n):
        k = kind[i]
        r = ref[i]
        if k == 0:
            size += lstart[i + 1] - lstart[i] - 2 + nstart[5 * r + 5] - nstart[5 * r] - 5 + _TAIL_BYTES.shape[0]
        elif k == 1:
            size += litstart[r + 1] - litstart[r]
        elif k == 2:
            size += lstart[i + 1] - lstart[i] - 2 + litstart[r + 1] - litstart[r]
    out = np.empty(size, dtype=np.uint8)
    o = 0
    for i in range(n):
        k = kind[i]
        r = ref[i]
        if k == 3:
            continue
        if k == 1:
            o = _copy(out, o, lit, litstart[r], litstart[r + 1])
            continue
        o = _copy(out, o, buf, lstart[i], lstart[i + 1] - 2)
        if k == 2:
            o = _copy(out, o, lit, litstart[r], litstart[r + 1])
            continue
        for part in range(5):
            o = _copy(out, o, _TAIL_BYTES, _TAIL_START[part], _TAIL_START[part + 1])
            x = 5 * r + part
            o = _copy(out, o, numbers, nstart[x], nstart[x + 1] - 1)
        o = _copy(out, o, _TAIL_BYTES, _TAIL_START[5], _TAIL_START[6])
    return out


@njit(cache=True)
def _copy(out, o, src, s, e):
    """``src[s:e]`` into ``out`` from ``o``; returns the position after it (short pieces byte by byte, which is
    cheaper than a slice copy)."""
    if e - s > 32:
        out[o : o + e - s] = src[s:e]
        return o + e - s
    for t in range(s, e):
        out[o] = src[t]
        o += 1
    return o
