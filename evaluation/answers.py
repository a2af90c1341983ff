"""Answer extraction for benchmark evaluation: option letters, yes/no and short open answers (up to 10 options,
``A``-``J``).

Two modes, never mixed within one report:

**Standard** (:func:`answer_span`, :func:`extract_choice`, :func:`extract_yes_no`, :func:`match_open`), following
VLMEvalKit's conventions (``vlmeval/utils/matching_util.py`` ``can_infer``/``can_infer_text`` for letters,
``vlmeval/dataset/utils/yorn.py`` ``YOrN_Extraction`` for yes/no). The answer span is the content of the LAST
``<answer>...</answer>`` block (the text after a last unclosed ``<answer>``, else the whole output). A letter is then
taken, in this order, from:

1. a leading marker: ``(B)``, ``[B]``, ``B.``, ``B)``, ``B:`` or a span that is just the letter (``(b)`` and a lone
   ``b`` are accepted in lower case too);
2. the span being exactly one option's text (case and surrounding punctuation ignored);
3. ``answer is B`` / ``answer: (B)`` / ``option B``;
4. a unique standalone option letter (a bare ``A``/``I`` in a span of more than three words is read as a word,
   not a letter);
5. a unique option text found in the span (an option contained in a longer matching option does not count).

So ``(B)``, ``B``, ``B.``, ``(B) text`` and ``text`` all map to B. There is no "first capital letter anywhere" and no
"first character" rule: when nothing above applies the prediction is None (an extraction failure, scored wrong).

**Paper** (:func:`paper_score` and the ``paper_*`` helpers) reproduces the public SpatialThinker evaluation script
(``evaluation/evals.py`` of github.com/hunarbatra/SpatialThinker: its answer-span step and its scoring branches)
including its defects, so that paper numbers can be
re-derived. Faithfully copied:

* span: text after the last ``Answer:`` (case-sensitive) if present; no answer tags -> the whole text; only a
  ``</answer>`` -> the text before the first one; then the content of the last ``<answer>``; an empty output is
  "Failed to extract." and wrong;
* MCQ branch ground truth: parentheses removed, and a ground truth longer than one character is cut to its first
  character, lower-cased (so ``"Yes"`` becomes ``"y"`` and never matches); HallusionBench ``"1"`` -> ``A``, else ``B``;
* MCQ branch prediction: a leading ``(X)`` is stripped with ``^\\([A-Za-z]\\)\\s*`` (the second, malformed pattern
  ``^\\[A-Za-z]\\)\\s*`` is applied too and never strips ``A)``), braces removed, then the text must EQUAL a
  lower-cased choice text; otherwise the fallback loop ALWAYS yields ``"A"`` (its condition holds a bare non-empty
  string). So a bare ``B``, ``(B)`` alone or ``(B) slightly different text`` score as **A**;
* correct iff ``gt.lower() == pred.lower()`` or ``grade_answer(gt, pred)`` (mathruler) or ``extract_answer(gt,
  pred)`` (the text inside the first ``(...)`` of the prediction, a trailing ``.`` dropped, compared
  case-insensitively);
* RealWorldQA / SpatialBench branch: stripped ground truth vs stripped span with the same three-way test; the
  generic branch (MMVP) compares the raw label with the same test.

``mathruler.grader.grade_answer`` is used when that package is installed; otherwise :func:`paper_grade_answer` ports
its string and number rules (PRM800K-style normalisation, integer strictness, tuple elements) and replaces the
symbolic sympy check by a numeric comparison, which gives the same verdict on letters, yes/no, words and plain
numbers (all the answers these benchmarks have).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rewards.prompt import LETTERS  # the option letters, A-J: at most 10 options, as the prompt builder

try:  # optional: the exact grader the paper's script calls; the port below stands in when it is absent
    from mathruler.grader import grade_answer as _mathruler_grade_answer
except ImportError:  # pragma: no cover - depends on the environment
    _mathruler_grade_answer = None


# --------------------------------------------------------------------------------------------------------------------
# standard mode
# --------------------------------------------------------------------------------------------------------------------

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_DECOR = " \t\r\n*#`\"'“”‘’_>"
_LEAD_PAREN = re.compile(r"^[\(\[]\s*([A-Za-z])\s*[\)\]]")
_LEAD_UPPER = re.compile(r"^([A-Z])(?:\s*[\.\):]|\s*$)")
_ANSWER_IS = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:|=)?\s*(?:option\s*|choice\s*)?[\(\[]?\s*([A-Z])\s*[\)\]]?(?![A-Za-z])",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[\(\[]\s*([A-Za-z])\s*[\)\]]|(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")
_WORDS = re.compile(r"[A-Za-z0-9]+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        (
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        )
    )
}


def answer_span(output: str | None) -> str:
    """The text the answer is read from: the content of the last ``<answer>...</answer>`` block; failing that the
    text after the last unclosed ``<answer>`` (a truncated response); failing that the whole output. Stripped."""
    if not output:
        return ""
    blocks = _ANSWER_BLOCK.findall(output)
    if blocks:
        return blocks[-1].strip()
    opens = list(_ANSWER_OPEN.finditer(output))
    if opens:
        return output[opens[-1].end() :].strip()
    return output.strip()


def _norm_text(text: str) -> str:
    """Lower case, single spaces, surrounding punctuation and quotes removed."""
    text = re.sub(r"\s+", " ", str(text).lower()).strip()
    return text.strip(" .,;:!?\"'`*()[]{}“”‘’")


def _letters_for(options: Sequence[str] | int) -> str:
    n = options if isinstance(options, int) else len(options)
    if not 1 <= n <= len(LETTERS):
        raise ValueError(f"a question needs 1 to {len(LETTERS)} options, got {n}")
    return LETTERS[:n]


def _option_texts(options: Sequence[str] | int) -> list[str]:
    return [] if isinstance(options, int) else [_norm_text(o) for o in options]


def extract_choice(output: str | None, options: Sequence[str] | int, *, span: bool = True) -> str | None:
    """The option letter (``"A"``...) a response chose, or None when no rule in the module docstring applies.

    ``options`` is the list of option texts (enables text matching) or just their number. ``span=False`` reads
    ``output`` as the answer text itself instead of taking its :func:`answer_span` first.
    """
    valid = _letters_for(options)
    texts = _option_texts(options)
    text = answer_span(output) if span else (output or "").strip()
    text = text.strip(_DECOR)
    if not text:
        return None

    # 1. leading marker, or the span is just the letter
    m = _LEAD_PAREN.match(text)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    m = _LEAD_UPPER.match(text)
    if m and m.group(1) in valid:
        return m.group(1)
    bare = text.strip(" .:)(][")
    if len(bare) == 1 and bare.upper() in valid:
        return bare.upper()

    # 2. the span is exactly one option text
    norm = _norm_text(text)
    exact = [valid[i] for i, t in enumerate(texts) if t and t == norm]
    if len(exact) == 1:
        return exact[0]

    # 3. "answer is B", "answer: (B)", "option B"
    said = {m.group(1).upper() for m in _ANSWER_IS.finditer(text) if m.group(1).isupper() or "(" in m.group(0)}
    said &= set(valid)
    if len(said) == 1:
        return said.pop()

    # 4. a unique standalone option letter
    n_words = len(_WORDS.findall(text))
    found = set()
    for m in _TOKEN.finditer(text):
        if m.group(1):
            letter = m.group(1).upper()
        else:
            letter = m.group(2)
            if letter in "AI" and n_words > 3:
                continue  # the article "A" / the pronoun "I"
        if letter in valid:
            found.add(letter)
    if len(found) == 1:
        return found.pop()

    # 5. a unique option text inside the span
    hits = [i for i, t in enumerate(texts) if t and re.search(r"(?<![a-z0-9])" + re.escape(t) + r"(?![a-z0-9])", norm)]
    hits = [i for i in hits if not any(j != i and texts[i] != texts[j] and texts[i] in texts[j] for j in hits)]
    if len(hits) == 1:
        return valid[hits[0]]
    return None


def extract_yes_no(output: str | None, *, span: bool = True) -> str | None:
    """``"Yes"`` / ``"No"`` with VLMEvalKit ``YOrN_Extraction`` semantics on the answer span: "yes" among its words
    and no "no" -> Yes; the reverse -> No; otherwise None (unknown)."""
    text = answer_span(output) if span else (output or "")
    words = set(_WORDS.findall(text.lower()))
    if "yes" in words and "no" not in words:
        return "Yes"
    if "no" in words and "yes" not in words:
        return "No"
    return None


def yes_no_answer(output: str | None, options: Sequence[str] | None = None) -> str | None:
    """A yes/no prediction: :func:`extract_yes_no`, else the chosen option's text (``(A)`` with options
    ``["Yes", "No"]``) when it is a yes/no word."""
    yn = extract_yes_no(output)
    if yn is not None or not options:
        return yn
    letter = extract_choice(output, options)
    if letter is None:
        return None
    return extract_yes_no(options[LETTERS.index(letter)], span=False)


def letter_of(answer: str, options: Sequence[str] | int) -> str | None:
    """Canonical letter of a ground-truth answer as datasets write it: ``"(C)"``, ``"C"``, ``"c"``, ``"(c)"``,
    ``"C. text"`` or the option text itself. None if it is none of these."""
    text = str(answer).strip()
    if not text:
        return None
    valid = _letters_for(options)
    m = re.fullmatch(r"[\(\[]?\s*([A-Za-z])\s*[\)\]\.:]?", text)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    m = re.match(r"^[\(\[]\s*([A-Za-z])\s*[\)\]]\s+\S", text) or re.match(r"^([A-Z])[\.\):]\s+\S", text)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    norm = _norm_text(text)
    hits = [valid[i] for i, t in enumerate(_option_texts(options)) if t == norm]
    return hits[0] if len(hits) == 1 else None


def _to_number(token: str) -> float | None:
    token = token.strip().lower().replace(",", "")
    if token in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[token])
    try:
        return float(token)
    except ValueError:
        return None


def normalize_open(text: str) -> str:
    """Normalisation for short open answers: lower case, single spaces, surrounding punctuation, quotes and a
    leading article removed."""
    t = _norm_text(text)
    return re.sub(r"^(?:the|a|an)\s+", "", t)


def match_open(output: str | None, answer: str) -> bool:
    """Whether a response's answer span matches a short open ground truth (a word, a number or yes/no).

    Equal after :func:`normalize_open`; a numeric ground truth also matches the span's only number (digits or
    number words up to twenty, e.g. ``"3"``, ``"3.0"``, ``"three"``, ``"There are 3."``); a yes/no ground truth
    matches :func:`extract_yes_no`."""
    span = answer_span(output)
    gt = normalize_open(answer)
    if not span or not gt:
        return False
    if normalize_open(span) == gt:
        return True
    gt_num = _to_number(gt)
    if gt_num is not None:
        nums = {v for v in (_to_number(w) for w in re.findall(r"-?[\d,]*\.?\d+|[A-Za-z]+", span)) if v is not None}
        return len(nums) == 1 and nums.pop() == gt_num
    if gt in ("yes", "no"):
        return (extract_yes_no(span, span=False) or "").lower() == gt
    return False


# --------------------------------------------------------------------------------------------------------------------
# paper mode: the public SpatialThinker evaluation script, defects included
# --------------------------------------------------------------------------------------------------------------------

PAPER_BRANCHES = ("mcq", "hallusion", "strip", "generic")
"""Scoring branches of the script: ``mcq`` (CV-Bench, BLINK, 3DSRBench, SpatialReasonerEval, RoboSpatial, STVQA),
``hallusion`` (the MCQ branch with HallusionBench's ground-truth and choice overrides), ``strip`` (RealWorldQA,
SpatialBench) and ``generic`` (MMVP)."""

PAPER_FAILED = "Failed to extract."
"""The script's prediction text when a response yields no answer span."""

_PAPER_PAREN = r"^\([A-Za-z]\)\s*"
_PAPER_PAREN_MALFORMED = r"^\[A-Za-z]\)\s*"  # as written in the script: matches the literal text "[A-Za-z])" only


@dataclass
class PaperScore:
    """One response scored as the paper's script scores it."""

    correct: bool
    prediction: str
    """The prediction the script compares (a letter after choice mapping in the MCQ branches)."""
    ground_truth: str
    """The processed ground truth the script compares."""


def paper_answer_span(output: str | None) -> str | None:
    """The script's answer span (``evaluation/evals.py``: the text after the last ``Answer:``, wrapped in answer tags
    when it has none, then the last ``<answer>`` block's content); None where it logs "Failed to extract."."""
    answer = output or ""
    if "Answer:" in answer:
        answer = answer.split("Answer:")[-1].strip()
    if answer and "<answer>" not in answer and "</answer>" not in answer:
        answer = f"<answer>{answer.strip()}</answer>"
    elif answer and "<answer>" not in answer and "</answer>" in answer:
        answer = f"<answer>{answer.split('</answer>')[0].strip()}</answer>"
    if not answer or "<answer>" not in answer:
        return None
    if "</answer>" not in answer:
        return answer.split("<answer>")[-1].strip()
    return answer.split("<answer>")[-1].split("</answer>")[0].strip()


def paper_mcq_ground_truth(response: str, choices: Sequence[str] | None, *, hallusion: bool = False) -> str:
    """The script's ground truth in the MCQ branch: parentheses removed; HallusionBench ``"1"`` -> ``A`` else ``B``;
    with choices, a ground truth longer than one character becomes its first character, lower-cased."""
    gt = str(response).replace("(", "").replace(")", "").strip()
    if hallusion:
        gt = gt.replace(".", "")
        gt = "A" if gt == "1" else "B"
    if choices and len(gt) > 1:
        gt = gt[0].lower()
    return gt


def paper_mcq_prediction(span: str, choices: Sequence[str] | None) -> str:
    """The script's prediction in the MCQ branch: the span with a leading ``(X)`` and braces removed must equal a
    lower-cased choice text (-> its letter); otherwise the always-true fallback returns ``"A"``. Without choices the
    span is returned unchanged."""
    if not choices:
        return span
    lowered = [str(c).lower() for c in choices]
    extracted = re.sub(_PAPER_PAREN, "", span)
    if extracted == span:
        extracted = re.sub(_PAPER_PAREN_MALFORMED, "", span)
    if "{" in extracted or "}" in extracted:
        extracted = extracted.replace("{", "").replace("}", "")
    if extracted.lower() in lowered:
        return LETTERS[lowered.index(extracted.lower())]
    # the script's loop: `if f'({L})' in answer or f'{L})' or f'{L}.' in answer` is true at j = 0 for ANY answer
    return "A"


def paper_extract_answer(correct_answer: str, pred_answer: str) -> bool:
    """The script's ``extract_answer``: the text inside the first ``(...)`` of the prediction (if it has both
    brackets), a trailing ``.`` dropped, compared case-insensitively after stripping."""
    if "(" in pred_answer and ")" in pred_answer:
        pred_answer = pred_answer.split("(")[1].split(")")[0]
    if len(pred_answer) and pred_answer[-1] == ".":
        pred_answer = pred_answer[:-1]
    return pred_answer.strip().lower() == correct_answer.strip().lower()


_UNITS = (
    "degree",
    "cm",
    "centimeter",
    "meter",
    "mile",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
    "foot",
    "feet",
    "inch",
    "yard",
    "liter",
)


def _mathd_normalize(text: str) -> str:
    """The hendrycks-MATH (``math_normalize``) string rules that can touch short answers."""
    text = text.strip()
    m = re.fullmatch(r"\\text\{(.+?)\}", text)
    if m:
        text = m.group(1).strip()
    for old, new in (
        ("\n", ""),
        ("\\!", ""),
        ("\\\\", "\\"),
        ("tfrac", "frac"),
        ("dfrac", "frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\$", ""),
        ("\\%", ""),
        ("%", ""),
    ):
        text = text.replace(old, new)
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if text.startswith("."):
        text = "0" + text
    parts = text.split("=")
    if len(parts) == 2 and len(parts[0]) <= 2:
        text = parts[1]
    text = text.replace(" ", "")
    return "\\frac{1}{2}" if text == "0.5" else text


def _is_int_text(text: str) -> bool:
    try:
        x = float(re.sub(r"(\d),(\d\d\d)(?=$|\D)", r"\1\2", text))
    except ValueError:
        return False
    return abs(x - round(x)) <= 1e-7


def _prm_normalize(text: str) -> str:
    """The PRM800K ``_normalize`` rules (without LaTeX parsing): units, ``$``/``%``, ``or``/``and`` as separators,
    integers written canonically, lower case."""
    m = re.fullmatch(r"\\text\{(?P<t>.+?)\}", text)
    if m:
        text = m.group("t")
    text = text.replace("\\%", "%").replace("\\$", "$").replace("$", "").replace("%", "")
    text = text.replace(" or ", " , ").replace(" and ", " , ")
    text = text.replace("million", "*10^6").replace("billion", "*10^9").replace("trillion", "*10^12")
    for unit in _UNITS:
        text = re.sub(f"{unit}(es)?(s)? *(\\^[0-9]+)?", "", text)
    text = re.sub(r"\^ *\\circ", "", text)
    if len(text) > 0 and text[0] == "{" and text[-1] == "}":
        text = text[1:-1]
    text = re.sub(",\\\\! *", "", text)
    try:
        if abs(float(text) - round(float(text))) <= 1e-7:
            text = str(round(float(text)))
    except (ValueError, OverflowError):
        pass
    text = re.sub("- *", "-", text)
    text = re.sub(r"([0-9]) +([0-9])", r"\1+\2", text)
    text = text.lower()
    if _is_int_text(text):
        text = str(int(float(text.replace(",", ""))))
    return text


def _split_tuple(text: str) -> list[str]:
    text = re.sub(r"(\d),(\d\d\d)(?=$|\D)", r"\1\2", text)
    if not text:
        return []
    if len(text) > 2 and text[0] in "()[]" and text[-1] in "()[]" and all(c not in text[1:-1] for c in "()[]"):
        return [e.strip() for e in text[1:-1].split(",")]
    return [text]


def paper_grade_answer(given: str, ground_truth: str) -> bool:
    """``mathruler.grader.grade_answer(given, ground_truth)``: the real one when installed, else a port of its string
    and number rules (symbolic sympy equality replaced by numeric equality)."""
    if _mathruler_grade_answer is not None:  # pragma: no cover - depends on the environment
        return bool(_mathruler_grade_answer(given, ground_truth))
    if given is None:
        return False
    if _mathd_normalize(ground_truth) == _mathd_normalize(given):
        return True
    gt_n, given_n = _prm_normalize(ground_truth), _prm_normalize(given)
    if gt_n == given_n:
        return True
    if not given_n:
        return False
    gt_elems, given_elems = _split_tuple(gt_n), _split_tuple(given_n)
    if len(gt_elems) != len(given_elems) or (len(gt_elems) > 1 and (gt_n[0] != given_n[0] or gt_n[-1] != given_n[-1])):
        return False
    for g, p in zip(gt_elems, given_elems):
        if _is_int_text(g) != _is_int_text(p):
            return False
        try:
            if float(g) != float(p):
                return False
        except ValueError:
            return False  # a symbolic expression: sympy would be asked; no benchmark here has one
    return True


def paper_score(
    output: str | None, ground_truth: str, *, branch: str, choices: Sequence[str] | None = None
) -> PaperScore:
    """Score one response exactly as the public script does. ``ground_truth`` is the dataset's raw answer field the
    script reads (CV-Bench ``"(C)"``, HallusionBench ``"1"``, STVQA ``answer_only`` ...), ``choices`` its raw choices
    field (None where the script has none), ``branch`` one of :data:`PAPER_BRANCHES`."""
    if branch not in PAPER_BRANCHES:
        raise ValueError(f"unknown paper scoring branch {branch!r}; expected one of {', '.join(PAPER_BRANCHES)}")
    gt_raw = "" if ground_truth is None else str(ground_truth)
    if branch in ("mcq", "hallusion"):
        if branch == "hallusion":
            choices = ["Yes", "No"]
        gt = paper_mcq_ground_truth(gt_raw, choices, hallusion=branch == "hallusion")
    else:
        gt = gt_raw.strip() if branch == "strip" else gt_raw
    span = paper_answer_span(output)
    if span is None:
        return PaperScore(False, PAPER_FAILED, gt)
    if branch in ("mcq", "hallusion"):
        pred = paper_mcq_prediction(span, choices)
    else:
        pred = span.strip() if branch == "strip" else span
    correct = gt.lower() == pred.lower() or paper_grade_answer(gt, pred) or paper_extract_answer(gt, pred)
    return PaperScore(bool(correct), pred, gt)
