"""One decision per track from name proposals and content evidence, and the `verified` rule.

Inputs per cue: the stem each track's *name* proposes (the fuzzy matcher's global assignment, or
the LLM's answer) with its score, and the :class:`~kmidi_ingest.content.ContentEvidence` of every
track × stem (final mixes are never passed in: they are not candidates). For each track:

1. The *plausible* stems are those whose content ``z`` reaches :data:`Z_PLAUSIBLE` and lies
   within :data:`MARGIN` of the track's best ``z`` (several stems holding the same notes, e.g.
   desk stems of one part, are all plausible).
2. No plausible stem: the name's proposal stands (``decided_by="name"``), or nothing.
3. The name's stem is plausible: it stands (``"name+content"``).
4. Otherwise the content decides (``"content"``): a track without a name proposal takes its best
   stem; a track whose name proposes another stem is moved only when the content is
   identity-strong (best ``z`` ≥ :data:`Z_VERIFY` and ``MARGIN`` above the name's stem), so a
   misleading name is overruled by clear content and nothing weaker.

Tracks decide independently, so several tracks may share a stem (kit pieces → the drum stem, the
families printed together into one stem). A doubled part has no variance of its own in the joint
fit; when its z across the stems is the same as another track's (r ≥ :data:`TWIN_R`) it follows
that track to the stem that is also its own best (:func:`_twin_choice`).

``verified`` (identity): ``True`` when the chosen stem's ``z`` ≥ :data:`Z_VERIFY` **and** it beats
every other stem by at least :data:`MARGIN` (the runner-up and margin are stored); ``False`` when
the notes were comparable and the stem clearly does not hold them (``z`` < :data:`Z_REJECT`, or
another stem is identity-strong and ``MARGIN`` better); ``NULL`` with the reason otherwise (too
few notes inside the audio, silent or short stem, or a runner-up that explains the notes nearly
as well, as a band playing in unison with the guitar does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .content import CURVE_RATE_HZ, CURVES, MAX_LAG_S, ContentEvidence

Z_VERIFY = 4.0  # identity: the notes explain the stem this far beyond shifted copies
Z_PLAUSIBLE = 3.0
Z_REJECT = 2.0  # below this the stem does not follow the notes
Z_PICK = 2.0  # the least z with which the joint fit's pick is taken
MARGIN = 2.0  # z above every other stem's z, for identity by z alone
U_ASSIGN = 0.002  # unique share (R² only this track explains) that lets content pick a stem
U_VERIFY = 0.005
TWIN_R = 0.99
U_RATIO = 2.0  # unique share at least this many times the runner-up's


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The stem chosen for one track and the evidence behind it.

    ``content_z`` / ``content_score`` / ``content_lag_s`` are those of the chosen stem;
    ``runner_up`` is the best other stem by content and ``margin`` the chosen stem's ``z`` minus
    the runner-up's; ``content_p`` is the Bonferroni-corrected Gaussian tail of ``content_z``
    (over the lags searched). ``decided_by`` is ``name``, ``content``, ``name+content`` or
    ``none`` (the name side says ``llm`` instead of ``name`` for the LLM's proposals).
    """

    track_index: int
    stem_index: int | None
    decided_by: str
    verified: bool | None
    reason: str | None
    content_z: float | None = None
    content_score: float | None = None
    content_p: float | None = None
    content_lag_s: float | None = None
    runner_up: int | None = None
    margin: float | None = None
    evidence: str | None = None  # the curves that carried the z (spectral, band_onset, onset)


def p_value(z: float) -> float:
    """One-sided Gaussian tail of ``z``, times the number of lags searched (Bonferroni)."""
    # ndtr(-z) is what scipy.stats.norm.sf(z) computes, bit for bit, without loading
    # scipy.stats (~0.6 s of CPU in every process that matches a cue).
    from scipy.special import ndtr

    lags = 2 * int(round(MAX_LAG_S * CURVE_RATE_HZ)) + 1
    return float(min(1.0, lags * ndtr(-z)))


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _content_choice(z: np.ndarray, u: np.ndarray, *, alone: bool) -> int | None:
    """The stem the content alone picks for one track, or ``None`` when it cannot tell."""
    if not len(z):
        return None
    zk = np.where(np.isfinite(z), z, -np.inf)
    uk = np.where(np.isfinite(u), u, -np.inf)
    best_u = int(np.argmax(uk))
    # the joint fit's pick must also be among the stems that follow the notes best on their own:
    # a stem far below another one in z is a fit artefact, not the stem holding the notes
    if uk[best_u] >= U_ASSIGN and zk[best_u] >= Z_PICK and zk[best_u] >= zk.max() - MARGIN:
        return best_u
    if not alone:
        return None
    best_z = int(np.argmax(zk))
    others = np.delete(zk, best_z)
    runner = float(others.max()) if len(others) else -np.inf
    if zk[best_z] >= Z_VERIFY and zk[best_z] - runner >= MARGIN:
        return best_z
    return None


def _twin_choice(i: int, z: np.ndarray, picks: Sequence[int | None]) -> int | None:
    """A doubled part: follow the track whose z across the stems is the same as this one's."""
    row = np.nan_to_num(z[i], nan=0.0)
    if row.std() == 0:
        return None
    best, best_r = None, TWIN_R
    for k, pick in enumerate(picks):
        if k == i or pick is None:
            continue
        other = np.nan_to_num(z[k], nan=0.0)
        if other.std() == 0:
            continue
        r = float(np.corrcoef(row, other)[0, 1])
        if r > best_r:
            best, best_r = pick, r
    if best is None or row[best] < Z_VERIFY or row[best] < row.max():
        return None
    return best


def decide(
    name_choice: Sequence[int | None],
    content: ContentEvidence,
    *,
    stem_names: Sequence[str],
    name_source: str = "name",
) -> list[Decision]:
    """One :class:`Decision` per track (see the module docstring).

    Parameters
    ----------
    name_choice : sequence of int or None
        The stem each track's name proposes (index into the stems), in track order.
    content : ContentEvidence
        Shape ``(n_tracks, n_stems)``; NaN ``z`` where there is no evidence.
    stem_names : sequence of str
        For the reasons.
    name_source : str
        ``"name"`` (fuzzy) or ``"llm"``: how ``decided_by`` calls the name side.
    """
    out: list[Decision] = []
    # With one track there is nothing to share the credit with: its z must decide alone. With
    # several tracks of one song, every stem follows every track's beats and chords somewhat, and
    # only the unique share (the joint fit) tells which stem holds which track.
    alone = int(np.isfinite(content.z).any(axis=1).sum()) <= 1
    picks = [
        _content_choice(content.z[i], content.unique[i], alone=alone)
        for i in range(len(name_choice))
    ]
    for i, proposed in enumerate(name_choice):
        z, u = content.z[i], content.unique[i]
        chosen = picks[i]
        if chosen is None and not alone:
            chosen = _twin_choice(i, content.z, picks)
        if chosen is None:
            stem, by = proposed, (name_source if proposed is not None else "none")
        elif proposed is None:
            stem, by = chosen, "content"
        elif proposed == chosen or _holds_too(z, u, proposed, chosen):
            stem, by = proposed, f"{name_source}+content"
        elif _clear(z, u, chosen, proposed):
            stem, by = chosen, "content"
        else:
            stem, by = proposed, name_source
        out.append(_verdict(i, stem, by, content, stem_names, alone=alone))
    return out


def _holds_too(z: np.ndarray, u: np.ndarray, proposed: int, chosen: int) -> bool:
    """The name's stem explains the notes about as well as the content's choice (doubled parts)."""
    zp, up = z[proposed], u[proposed]
    if not np.isfinite(zp) or zp < Z_PLAUSIBLE:
        return False
    return bool(np.isfinite(up) and up * U_RATIO >= u[chosen] or zp >= z[chosen] - MARGIN / 2)


def _clear(z: np.ndarray, u: np.ndarray, chosen: int, proposed: int) -> bool:
    """Content strong enough to overrule a name: identity-level and well above the name's stem."""
    zc, zp = z[chosen], z[proposed]
    if not np.isfinite(zc) or zc < Z_VERIFY:
        return False
    if not np.isfinite(zp):
        return True
    uc, up = u[chosen], u[proposed]
    by_share = np.isfinite(uc) and uc >= U_VERIFY and uc >= U_RATIO * max(float(up), 0.0)
    return bool(zc - zp >= MARGIN or by_share)


def _verdict(
    i: int,
    stem: int | None,
    by: str,
    content: ContentEvidence,
    stem_names: Sequence[str],
    *,
    alone: bool,
) -> Decision:
    if stem is None:
        return Decision(track_index=i, stem_index=None, decided_by=by, verified=None, reason=None)
    row, shares = content.z[i], content.unique[i]
    z = _finite(row[stem])
    others = [(float(row[j]), j) for j in range(len(row)) if j != stem and np.isfinite(row[j])]
    runner_z, runner = max(others) if others else (None, None)
    margin = None if z is None or runner_z is None else z - runner_z
    share = _finite(shares[stem])
    other_shares = [float(v) for j, v in enumerate(shares) if j != stem and np.isfinite(v)]
    runner_share = max(other_shares) if other_shares else None
    curves = content.z_curves[i, stem]
    evidence = (
        ",".join(name for name, v in zip(CURVES, curves, strict=True) if np.isfinite(v) and v >= 2)
        or None
        if z is not None
        else None
    )
    base = Decision(
        track_index=i,
        stem_index=stem,
        decided_by=by,
        verified=None,
        reason=None,
        content_z=None if z is None else round(z, 3),
        content_score=None if share is None else round(share, 5),
        content_p=None if z is None else p_value(z),
        content_lag_s=None if z is None else round(float(content.lag_s[i, stem]), 3),
        runner_up=runner,
        margin=None if margin is None else round(margin, 3),
        evidence=evidence,
    )
    if z is None:
        return replace(base, verified=None, reason=content.reason[i][stem] or "no content evidence")
    runner_name = stem_names[runner] if runner is not None else None
    by_z = alone and (margin is None or margin >= MARGIN)
    by_share = (
        share is not None
        and share >= U_VERIFY
        and (runner_share is None or share >= U_RATIO * max(runner_share, 0.0))
    )
    if z >= Z_VERIFY and (by_z or by_share):
        return replace(base, verified=True, reason=None)
    if runner_z is not None and runner_z >= Z_VERIFY and runner_z - z >= MARGIN:
        return replace(
            base,
            verified=False,
            reason=f"the notes are in {runner_name!r} (z {runner_z:.1f} against {z:.1f})",
        )
    if z < Z_REJECT or (not alone and share is not None and share < U_ASSIGN and z < Z_VERIFY):
        return replace(
            base,
            verified=False,
            reason=f"the stem does not follow the notes (z {z:.1f}, unique share {share or 0:.4f})",
        )
    if z >= Z_VERIFY and not alone and share is not None and share < U_ASSIGN:
        return replace(
            base,
            verified=None,
            reason=(
                f"doubled: another track explains the same part of the stem "
                f"(z {z:.1f}, unique share {share:.4f})"
            ),
        )
    if z >= Z_VERIFY:
        return replace(
            base,
            verified=None,
            reason=(
                f"ambiguous: {runner_name!r} explains the notes nearly as well "
                f"(z {z:.1f} against {runner_z:.1f})"
            ),
        )
    return replace(base, verified=None, reason=f"weak evidence (z {z:.1f} < {Z_VERIFY:g})")
