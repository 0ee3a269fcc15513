"""Shared pieces of the benchmark sections: the row type and the table printer."""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass


@dataclass(frozen=True, kw_only=True)
class Row:
    """One figure beside its same-run baseline.

    ``higher_is_better`` says which way the ratio should point; ``target`` is the ratio the issue
    asks for (e.g. ``0.8`` for "at least 0.8× the limit"), or ``None``.
    """

    section: str
    figure: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    higher_is_better: bool = True
    target: float | None = None

    @property
    def ratio(self) -> float:
        if self.baseline_value == 0:
            return float("inf")
        return self.value / self.baseline_value

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["meets_target"] = self.meets_target
        return data


def format_table(rows: list[Row]) -> str:
    header = (
        "section",
        "figure",
        "value",
        "baseline (same run)",
        "baseline value",
        "ratio",
        "target",
    )
    lines = [header]
    for r in rows:
        goal = (
            ""
            if r.target is None
            else (
                f"{'≥' if r.higher_is_better else '≤'}{r.target:g}× "
                f"{'ok' if r.meets_target else 'MISSED'}"
            )
        )
        lines.append(
            (
                r.section,
                r.figure,
                f"{r.value:,.3g} {r.unit}",
                r.baseline,
                f"{r.baseline_value:,.3g} {r.unit}",
                f"{r.ratio:.2f}×",
                goal,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
