"""Where the flags fall: counts by class pair (given → suggested) and by given class.

Plain lists in, plain dicts out (no pandas), so ``noiseaudit show`` stays quick to start. Flags
concentrated in a few class pairs point at confusable classes or a labelling rule, and are the
case where a longer scan ranks better (README, ``--epochs``); flags spread over all pairs look
like random slips.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from noiseaudit.errors import option
from noiseaudit.formats import percent


def flags_by_pair(given: Sequence, suggested: Sequence, flagged: Sequence[bool]) -> list[dict[str, Any]]:
    """One dict per (given, suggested) pair among the flagged samples, most flags first.

    Each holds ``given_label``, ``suggested_label``, ``n_flagged``, ``share_of_flagged`` (of all
    flags) and ``share_of_class`` (of the samples with that given label).
    """
    class_size = Counter(given)
    pairs = Counter((g, s) for g, s, f in zip(given, suggested, flagged) if f)
    total = sum(pairs.values())
    return [{"given_label": g, "suggested_label": s, "n_flagged": n, "share_of_flagged": n / total,
             "share_of_class": n / class_size[g]}
            for (g, s), n in sorted(pairs.items(), key=lambda item: (-item[1], str(item[0][0]), str(item[0][1])))]


def flags_by_class(given: Sequence, flagged: Sequence[bool], predicted: Sequence | None = None) -> list[dict[str, Any]]:
    """One dict per given label, the largest flagged share first: ``given_label``, ``n_samples``,
    ``n_flagged``, ``share_flagged`` and, given the model's ``predicted`` labels of all the scored samples (not
    only those of ``given``: ``show --class`` counts one class), ``n_predicted`` (the samples the model predicts
    as that class, whatever their given label)."""
    size = Counter(given)
    hits = Counter(g for g, f in zip(given, flagged) if f)
    votes = None if predicted is None else Counter(predicted)
    return [{"given_label": g, "n_samples": n, "n_flagged": hits[g], "share_flagged": hits[g] / n,
             **({} if votes is None else {"n_predicted": votes[g]})}
            for g, n in sorted(size.items(), key=lambda item: (-hits[item[0]] / item[1], str(item[0])))]


# A class the model predicts for fewer samples than this share of those that carry it as their label was
# barely learned (a few samples beside large classes, or a class filled with wrong labels): the model disputes
# nearly all of them, so nearly all are flagged, right or wrong. On balanced data even a 40% pair-flip leaves a
# class's predictions near its count.
UNLEARNED_SHARE = 0.25
ENOUGH_PER_CLASS = 20  # below this many scored samples per class, a weak fit can be the data's size, not a failure


def unlearned(groups: list[dict[str, Any]], n_scored: int, n_classes: int) -> list[dict[str, Any]]:
    """The classes of ``groups`` (from :func:`flags_by_class` with ``predicted``) the model barely learned; none in
    a scan of fewer than :data:`ENOUGH_PER_CLASS` scored samples per class (``n_scored`` of ``n_classes``)."""
    if n_scored < ENOUGH_PER_CLASS * n_classes:
        return []
    return [g for g in groups if g["n_predicted"] < UNLEARNED_SHARE * g["n_samples"]]


def unlearned_line(classes: list[dict[str, Any]], balanced: bool = False, most: int = 5) -> str:
    """What to say about the :func:`unlearned` classes ("" for none): which, what their flags are worth, and what to
    do (``balanced``: the scan trained with ``balance_classes`` already)."""
    if not classes:
        return ""
    ordered = sorted(classes, key=lambda g: (g["n_samples"], str(g["given_label"])))
    named = ", ".join(f"'{g['given_label']}' ({g['n_samples']} given, {g['n_predicted']} predicted, "
                      f"{g['n_flagged']} flagged)" for g in ordered[:most])
    more = f" and {len(ordered) - most} more" if len(ordered) > most else ""
    which = "a class" if len(ordered) == 1 else f"{len(ordered)} classes"
    rescan = "" if balanced else f", scan again with {option('balance_classes', True)} (small classes then stop " \
        "being disputed for their size)"
    return (f"The model barely learned {which}: it predicts each for fewer samples than {UNLEARNED_SHARE:.0%} of "
            f"those given its label: {named}{more}. Flags there cannot tell a wrong label from a class too small or "
            f"too hard to learn: review them by eye{rescan}, and pass the verified ones as "
            f"{option('trusted')}.")


def largest_pair_share(pairs: list[dict[str, Any]]) -> float:
    """The share of the flags in each given class's largest pair, summed over classes (``pairs`` from
    :func:`flags_by_pair`). Flags spread evenly over the C - 1 other classes give about 1/(C - 1); all in
    one pair per class, 1. The scan's ``rate_choice.concentration`` is the same share over the model's
    disagreements, rescaled so that an even spread is 0."""
    largest: dict[Any, float] = {}
    for pair in pairs:
        largest[pair["given_label"]] = max(largest.get(pair["given_label"], 0.0), pair["share_of_flagged"])
    return sum(largest.values())


def concentration_line(pairs: list[dict[str, Any]], classes: int) -> str:
    """:func:`largest_pair_share` in words, beside an even spread's share ("" below three classes or
    without flags, where it says nothing)."""
    if classes < 3 or not pairs:
        return ""
    return (f"{percent(largest_pair_share(pairs))} of the flags fall in each class's most common pair (about "
            f"{percent(1 / (classes - 1))} if they were spread evenly over the other classes).")
