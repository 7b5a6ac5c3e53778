"""The filtering rules of instruction data, by name (no heavy imports: the config schema
lists them as the choices of ``prune.rule`` on text data).

Each rule names the score it reads and which end of it is kept (``alseg.text.filtering.
keep``); ``<rule>/skill`` applies the rule inside each skill with that skill's share.
"""

from __future__ import annotations

# rule -> (score column, which end is kept: low | middle | high | ifd)
RULES: dict[str, tuple[str, str]] = {
    "random": ("random", "high"),
    "ppl_low": ("ppl", "low"),
    "ppl_middle": ("ppl", "middle"),
    "ppl_high": ("ppl", "high"),
    "ifd": ("ifd", "ifd"),
    "el2n": ("el2n", "high"),
    "semdedup": ("semdedup", "low"),
    "less": ("less", "high"),
}
PER_SKILL = "/skill"  # a rule name with this suffix keeps the share within each skill
SCORE_COLUMNS = tuple(dict.fromkeys(col for col, _ in RULES.values()))


def rule_names() -> list[str]:
    """Every valid ``prune.rule`` on text: the rules, each per skill, then the baseline."""
    scored = [r for r in RULES if r != "random"]
    return scored + [r + PER_SKILL for r in scored] + ["random"]
