"""An embedded, procedurally generated instruction set with defects at known rates.

Six skills with one checkable answer each (``SKILLS``): adding two numbers, sorting a list,
reversing a word, counting its letters, looking a key up in a small table, converting a
unit. Each training example is an (instruction, response) pair; a share of them carries a
defect of a known kind, recorded per example so that a filtering rule's removals can be
scored by precision and recall per defect:

* ``wrong``: the response is a plausible but wrong answer to the instruction;
* ``near_duplicate``: a clean example of the same skill again, its instruction changed in
  spacing and case only (``source`` names the example it copies);
* ``garbled``: the response's characters are shuffled with random letters mixed in;
* ``off_task``: the response answers another instruction of another skill;
* ``truncated``: the response is cut to a strict, non-empty prefix of the right answer
  (drawn among the examples whose answer has at least two characters).

Defects are assigned by exact counts (round(rate x n) of each kind, drawn without
replacement), so a generated set holds exactly the rates it was asked for. The held-out
evaluation set (``eval_set``) is clean, per skill, drawn from another random stream, and
shares no instruction with the training set it is made for.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFECTS = ("wrong", "near_duplicate", "garbled", "off_task", "truncated")
UNKNOWN = "unknown"  # the defect of an example read from a file: not known
# pseudo-words of 2-3 syllables: ~280K of them, so held-out words are plentiful
SYLLABLES = [c + v for c in "bcdfglmnprstv" for v in "aeiou"]
UNITS = {("km", "m"): 1000, ("m", "cm"): 100, ("kg", "g"): 1000, ("h", "min"): 60}


@dataclass(frozen=True)
class Example:
    instruction: str
    response: str
    skill: str
    defect: str = "clean"  # "clean", one of DEFECTS, or UNKNOWN (read from a file)
    source: int = -1  # near duplicates: the index of the example copied


@dataclass(frozen=True)
class Task:
    instruction: str
    answer: str
    wrong: str  # a plausible wrong answer


def _add(r: random.Random) -> Task:
    a, b = r.randint(10, 99), r.randint(10, 99)
    return Task(f"Add {a} and {b}.", str(a + b), str(a + b + r.choice([-10, -1, 1, 10])))


def _sort(r: random.Random) -> Task:
    xs = r.sample(range(1, 50), r.randint(3, 6))
    ok = sorted(xs)
    bad = ok[:]
    i = r.randrange(len(bad) - 1)
    bad[i], bad[i + 1] = bad[i + 1], bad[i]
    line = " ".join(map(str, xs))
    return Task(f"Sort in ascending order: {line}", " ".join(map(str, ok)), " ".join(map(str, bad)))


def _word(r: random.Random) -> str:
    return "".join(r.choice(SYLLABLES) for _ in range(r.randint(2, 3)))


def _reverse(r: random.Random) -> Task:
    w = _word(r)
    wrong = w[::-1][1:] + w[::-1][0]  # rotated by one: same letters, wrong order
    return Task(f"Reverse the word: {w}", w[::-1], wrong)


def _count(r: random.Random) -> Task:
    w = _word(r)
    return Task(f"How many letters does '{w}' have?", str(len(w)), str(len(w) + r.choice([-1, 1])))


def _lookup(r: random.Random) -> Task:
    keys = r.sample(string.ascii_lowercase, 4)
    vals = [r.randint(0, 99) for _ in keys]
    k = r.randrange(4)
    table = "; ".join(f"{a}={v}" for a, v in zip(keys, vals))
    other = vals[(k + 1) % 4] if vals[(k + 1) % 4] != vals[k] else vals[k] + 1
    return Task(f"In the table {table}, what is {keys[k]}?", str(vals[k]), str(other))


def _convert(r: random.Random) -> Task:
    (src, dst), f = r.choice(sorted(UNITS.items()))
    x = r.randint(2, 30)
    return Task(f"Convert {x} {src} to {dst}.", str(x * f), str(x * f * 10))


SKILLS: dict[str, Callable[[random.Random], Task]] = {
    "add": _add,
    "sort": _sort,
    "reverse": _reverse,
    "count": _count,
    "lookup": _lookup,
    "convert": _convert,
}


def check_rates(rates: dict[str, float]) -> None:
    """Defect rates name known defects, lie in [0, 1] and sum to at most 1."""
    bad = sorted(set(rates) - set(DEFECTS))
    if bad:
        raise ValueError(f"unknown defect {bad[0]!r}; valid: {', '.join(DEFECTS)}")
    for k, v in rates.items():
        if not 0 <= float(v) <= 1:
            raise ValueError(f"defect rate {k}={v} must lie in [0, 1]")
    if sum(float(v) for v in rates.values()) > 1 + 1e-9:
        raise ValueError(f"defect rates sum to {sum(rates.values()):g}; they must sum to <= 1")


def _skills(skills: Sequence[str] | None) -> list[str]:
    names = list(skills) if skills is not None else list(SKILLS)
    bad = [s for s in names if s not in SKILLS]
    if bad or not names:
        what = f"unknown skill {bad[0]!r}" if bad else "no skill given"
        raise ValueError(f"{what}; valid: {', '.join(SKILLS)}")
    return names


def _garble(text: str, r: random.Random) -> str:
    chars = list(text) + [r.choice(string.ascii_letters + "#@%") for _ in range(max(3, len(text)))]
    r.shuffle(chars)
    return "".join(chars)


def _truncate(text: str, r: random.Random) -> str:
    return text[: r.randint(1, len(text) - 1)]


def _respace(text: str, r: random.Random) -> str:
    words = text.split(" ")
    i = r.randrange(len(words))
    upper = words[i].upper()
    words[i] = upper if upper != words[i] and r.random() < 0.5 else words[i] + " "
    return " ".join(words)


def _assign_defects(
    tasks: list[tuple[str, Task]], rates: dict[str, float], r: random.Random
) -> dict[int, str]:
    """Which examples carry which defect: exactly round(rate x n) of each kind, truncations
    only where an answer has two characters or more."""
    n = len(tasks)
    counts = {k: round(float(rates.get(k, 0.0)) * n) for k in DEFECTS}
    cuttable = [i for i, (_, t) in enumerate(tasks) if len(t.answer) >= 2]
    if counts["truncated"] > len(cuttable):
        raise ValueError(
            f"truncated={rates['truncated']:g} asks for {counts['truncated']} truncated "
            f"examples, but only {len(cuttable)} answers have two characters or more"
        )
    kind = {i: "truncated" for i in r.sample(cuttable, counts["truncated"])}
    rest = r.sample([i for i in range(n) if i not in kind], n - len(kind))
    start = 0
    for k in DEFECTS:
        if k == "truncated":
            continue
        for i in rest[start : start + counts[k]]:
            kind[i] = k
        start += counts[k]
    return kind


def make_instructions(
    n: int,
    rates: dict[str, float] | None = None,
    seed: int = 0,
    skills: Sequence[str] | None = None,
) -> list[Example]:
    """``n`` training examples, skills in turn, with exactly round(rate x n) defects of each
    kind (module docstring)."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    rates = dict(rates or {})
    check_rates(rates)
    names = _skills(skills)
    r = random.Random(f"alseg-instructions-{seed}")
    tasks = [(names[i % len(names)], SKILLS[names[i % len(names)]](r)) for i in range(n)]
    kind = _assign_defects(tasks, rates, r)
    clean = [i for i in range(n) if i not in kind]
    out: list[Example] = []
    for i, (skill, t) in enumerate(tasks):
        d = kind.get(i, "clean")
        if d == "clean":
            out.append(Example(t.instruction, t.answer, skill))
        elif d == "wrong":
            out.append(Example(t.instruction, t.wrong, skill, d))
        elif d == "garbled":
            out.append(Example(t.instruction, _garble(t.answer, r), skill, d))
        elif d == "truncated":
            out.append(Example(t.instruction, _truncate(t.answer, r), skill, d))
        elif d == "off_task":
            others = [s for s in names if s != skill] or names
            other = SKILLS[r.choice(others)](r)
            out.append(Example(t.instruction, other.answer, skill, d))
        else:  # near_duplicate: filled in below, once the clean examples exist
            out.append(Example("", "", skill, d))
    for i, e in enumerate(out):
        if e.defect == "near_duplicate":
            same = [j for j in clean if out[j].skill == e.skill]
            if not same:
                raise ValueError(
                    f"near duplicates need a clean '{e.skill}' example to copy; lower the "
                    "defect rates or raise n"
                )
            src = r.choice(same)
            s = out[src]
            out[i] = Example(_respace(s.instruction, r), s.response, s.skill, e.defect, src)
    return out


def eval_set(
    per_skill: int,
    train: Sequence[Example] = (),
    seed: int = 0,
    skills: Sequence[str] | None = None,
) -> list[Example]:
    """``per_skill`` clean examples of each skill, none with an instruction of ``train``."""
    if per_skill < 1:
        raise ValueError(f"per_skill={per_skill} must be >= 1")
    seen = {e.instruction for e in train}
    r = random.Random(f"alseg-eval-{seed}")
    out: list[Example] = []
    for skill in _skills(skills):
        made, tries = 0, 0
        while made < per_skill:
            tries += 1
            if tries > 1000 * per_skill:
                raise ValueError(f"cannot draw {per_skill} unseen '{skill}' examples")
            t = SKILLS[skill](r)
            if t.instruction in seen:
                continue
            seen.add(t.instruction)
            out.append(Example(t.instruction, t.answer, skill))
            made += 1
    return out
