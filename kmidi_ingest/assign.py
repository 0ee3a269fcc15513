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

Several tracks may share a stem (kit pieces → the drum stem, the families printed together into
one stem). With several tracks, the content's picks are made jointly (:func:`content_picks`):

- a track's unique share picks its stem (``≥`` :data:`U_ASSIGN`, z near the best); a strong one
  (``≥`` :data:`U_STRONG`, twice every other stem's) even where another stem follows the notes
  better by z (a chord doubled in another family's stem lifts that stem's z, not its share);
  a small one (``≥`` :data:`U_AGREE`, twice every other stem's) where the best z (``≥``
  :data:`Z_VERIFY`, :data:`MARGIN_AGREE` above the rest) is at the same stem;
- a *weak* pick (not identity-strong) that goes against the track's family (same instrument
  category), whose identity-strong members all sit in one other stem, moves there when the
  track's z there is plausible, else it is dropped;
- a track with no pick (a doubled part has no variance of its own in the joint fit) joins the
  stem its family's picks sit in, when its z there is plausible and near its best; otherwise it
  takes its best stem by z when that is strong (``≥`` :data:`Z_DOUBLED`, :data:`MARGIN` above the
  rest), no other stem credits it a strong share, no member of its family sits elsewhere, and it
  doubles (:mod:`kmidi_ingest.doubling`) no track of another family;
- a track doubling another family's track (a *twin*: the same z everywhere, the audio cannot tell
  the two apart) waits until every track playing half its notes or more is placed: their stems
  account for the notes there, and of the other stems one that clearly follows the notes
  (``Z_VERIFY``, ``MARGIN`` above the rest) holds it; otherwise (no such stem, two of them, or
  the notes heard only in the twins' stems, which a quiet twin masked by a loud one also gives)
  it stays unpaired;
- once the evidence has placed all it can, twins none of whom it placed go together where
  their notes are heard (one stem ``Z_VERIFY`` and ``MARGIN`` above the rest, no other reaching
  ``Z_VERIFY``), except a twin whose family sits in one stem, which goes with it; at least one
  of them must land in that stem, or none is paired;
- last, the *category prior*: a track the content cannot place joins the one stem its family
  sits in when every stem with audio already holds a placed track (so a cue with a stem per
  track leaves it unpaired) and no other stem clearly holds its notes.

Pairs made that way (family, doubling or category) are never verified: ``verify_reason`` says
why.

A drum track's content evidence also follows the kick and bass of pitched stems. Its *kit*
evidence (:mod:`kmidi_ingest.kit`: its hits against each stem's rise in the hat and cymbal
bands) overrules a pick the content made but did not verify, or fills in a missing one, when its
best stem's kit ``z`` reaches :data:`Z_PLAUSIBLE` and lies :data:`KIT_MARGIN` above every other
stem's; a name's proposal is never overruled by it, and such a pair is never verified.

``verified`` (identity): ``True`` when the chosen stem's ``z`` ≥ :data:`Z_VERIFY` **and** it beats
every other stem: a lone track by at least :data:`MARGIN` in z; beside other tracks by its unique
share (≥ :data:`U_VERIFY`, twice the runner-up's) with no other stem more than :data:`MARGIN`
above it in z (the runner-up and margin are stored); ``False`` when
the notes were comparable and the stem clearly does not hold them (``z`` < :data:`Z_REJECT`, or
another stem is identity-strong and ``MARGIN`` better); ``NULL`` with the reason otherwise (too
few notes inside the audio, silent or short stem, or a runner-up that explains the notes nearly
as well, as a band playing in unison with the guitar does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .content import CURVES, MAX_LAG_S, ContentEvidence
from .mel import CURVE_RATE_HZ

Z_VERIFY = 4.0  # identity: the notes explain the stem this far beyond shifted copies
Z_PLAUSIBLE = 3.0
Z_REJECT = 2.0  # below this the stem does not follow the notes
Z_PICK = 2.0  # the least z with which the joint fit's pick is taken
MARGIN = 2.0  # z above every other stem's z, for identity by z alone
U_ASSIGN = 0.002  # unique share (R² only this track explains) that lets content pick a stem
U_VERIFY = 0.005
U_RATIO = 2.0  # unique share at least this many times the runner-up's
U_STRONG = 0.005  # a unique share this large, twice every other stem's, picks despite a lower z
U_AGREE = 0.0001  # any share beyond the fit's noise picks where the best z (≥ Z_VERIFY) agrees ...
MARGIN_AGREE = 1.0  # ... and that z is this far above every other stem's
Z_DOUBLED = 5.0  # a track with no unique share anywhere may take its best stem by z from here
DOUBLED_SHARE = 0.8  # share of note starts two tracks play both (each way): a doubled part
SHARED_NOTES = 0.5  # a track playing this share of another's note starts may light its stem too
KIT_MARGIN = 3.0  # a drum track's kit z this far above every other stem's moves an unverified pick


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


def _strong_share(z: np.ndarray, u: np.ndarray) -> int | None:
    """A unique share strong enough to pick its stem on its own, or one that the best z agrees with."""
    if len(u) < 2:
        return None
    best = int(np.argmax(u))
    others = np.delete(u, best)
    if u[best] >= U_STRONG and z[best] >= Z_PLAUSIBLE and u[best] >= U_RATIO * max(others.max(), 0):
        return best
    top = int(np.argmax(z))
    agrees = top == best and u[top] >= max(U_AGREE, U_RATIO * others.max())
    if agrees and z[top] >= Z_VERIFY and z[top] - np.delete(z, top).max() >= MARGIN_AGREE:
        return top
    return None


def _identity_strong(z: np.ndarray, u: np.ndarray, stem: int) -> bool:
    others = np.delete(u, stem)
    runner = max(float(others.max()), 0.0) if len(others) else 0.0
    return bool(z[stem] >= Z_VERIFY and u[stem] >= U_VERIFY and u[stem] >= U_RATIO * runner)


def content_picks(
    content: ContentEvidence,
    *,
    families: Sequence[str | None] | None = None,
    doubled: np.ndarray | None = None,
) -> list[tuple[int | None, str | None]]:
    """The stem the content picks for each track, made jointly, and how (see the module docstring).

    Returns, per track, ``(stem or None, note)``: ``note`` is ``None`` for a pick of the track's
    own evidence, else why it was paired (with its family, or as a doubled part), for the reason.
    """
    n = content.z.shape[0]
    alone = int(np.isfinite(content.z).any(axis=1).sum()) <= 1
    if alone:
        return [
            (_content_choice(content.z[i], content.unique[i], alone=True), None) for i in range(n)
        ]
    z = np.where(np.isfinite(content.z), content.z, -np.inf)
    u = np.where(np.isfinite(content.unique), content.unique, -np.inf)
    family = list(families) if families is not None else [None] * n
    picks: list[int | None] = []
    for i in range(n):
        pick = _content_choice(content.z[i], content.unique[i], alone=False)
        picks.append(pick if pick is not None else _strong_share(z[i], u[i]))
    strong = [p is not None and _identity_strong(z[i], u[i], p) for i, p in enumerate(picks)]
    own = list(picks)  # the tracks' own picks: what a family's stem is read from
    notes: list[str | None] = [None] * n
    for i, pick in enumerate(picks):
        if pick is not None and z[i, pick] < z[i].max() - MARGIN:
            notes[i] = "the unique share is here, but another stem follows the notes better by z"
    for i, pick in enumerate(picks):
        if pick is None or strong[i] or family[i] is None:
            continue
        held = {own[k] for k in range(n) if k != i and strong[k] and family[k] == family[i]}
        if len(held) == 1 and pick not in held:
            (stem,) = held
            picks[i] = stem if z[i, stem] >= Z_PLAUSIBLE else None
            notes[i] = (
                f"moved to the stem of its family ({family[i]})" if picks[i] is not None else None
            )
    placing = _Placing(
        z=z,
        u=u,
        family=family,
        doubled=doubled,
        anchors={k: p for k, p in enumerate(picks) if p is not None},
        live={j for j in range(z.shape[1]) if np.isfinite(z[:, j]).any()},
    )

    def place(i: int, stem: int, note: str | None) -> None:
        picks[i], notes[i], placing.anchors[i] = stem, note, stem

    def settle(fill: Callable[[int, _Placing], tuple[int | None, str | None]]) -> None:
        changed = True  # a track placed may in turn place its family: until none moves
        while changed:
            changed = False
            for i in range(n):
                if picks[i] is None and np.isfinite(z[i]).any():
                    stem, note = fill(i, placing)
                    if stem is not None:
                        place(i, stem, note)
                        changed = True

    settle(_fill_in)
    # once the evidence has placed all it can: twins none of whom it placed, then the category
    if doubled is not None:
        for members in _twin_clusters(doubled, family):
            if not any(k in placing.anchors for k in members):
                for k, (stem, note) in _place_twins(members, placing).items():
                    place(k, stem, note)
    settle(_by_category)
    return list(zip(picks, notes, strict=True))


@dataclass(frozen=True)
class _Placing:
    """What the placing of tracks without a pick reads: every track's z and unique share (``-inf``
    where there is no evidence), families, doubled shares, the tracks placed so far (track →
    stem, filled in as they are placed) and the stems with audio."""

    z: np.ndarray
    u: np.ndarray
    family: Sequence[str | None]
    doubled: np.ndarray | None
    anchors: dict[int, int]
    live: set[int]


def _twinned(doubled: np.ndarray) -> np.ndarray:
    """Which tracks double each other, each way (``[i, k]``; the diagonal is not read)."""
    return (doubled >= DOUBLED_SHARE) & (doubled.T >= DOUBLED_SHARE)


def _twin_clusters(doubled: np.ndarray, family: Sequence[str | None]) -> list[list[int]]:
    """Groups of tracks linked by doubling each other (each way), of more than one family."""
    linked = _twinned(doubled)
    root = list(range(len(family)))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    for i, k in zip(*np.nonzero(np.triu(linked, 1)), strict=True):
        root[find(int(i))] = find(int(k))
    groups: dict[int, list[int]] = {}
    for i in range(len(family)):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1 and len({family[k] for k in g}) > 1]


def _place_twins(members: Sequence[int], placing: _Placing) -> dict[int, tuple[int, str]]:
    """Stems for twins none of whom the evidence placed (their z is the same at every stem).

    Leaving out the stems of placed tracks that play half these notes or more, a stem that
    clearly follows them for every twin (``Z_VERIFY``, ``MARGIN`` above the rest, no other stem
    reaching ``Z_VERIFY``: the notes are heard there only) holds one twin at least. A twin
    whose family sits in one stem goes with it; the others go to that stem. If the twins
    disagree on the stem, or none of them would be in it: no stem for any.
    """
    z, family, anchors, doubled = placing.z, placing.family, placing.anchors, placing.doubled
    assert doubled is not None
    outside = [k for k in range(len(family)) if k not in members]
    sharing = {k for i in members for k in outside if doubled[i, k] >= SHARED_NOTES}
    covered = {anchors[k] for k in sharing if k in anchors}
    free = [s for s in range(z.shape[1]) if s not in covered]
    heard = set()
    for i in members:
        zf = z[i, free]
        if not len(zf):
            return {}
        best = int(np.argmax(zf))
        runner = float(np.delete(zf, best).max()) if len(free) > 1 else -np.inf
        if zf[best] < Z_VERIFY or zf[best] - runner < MARGIN or runner >= Z_VERIFY:
            return {}
        heard.add(free[best])
    if len(heard) != 1:
        return {}
    (stem,) = heard
    placed = {}
    for i in members:
        held = _family_stem(i, family, anchors)
        if held is not None and np.isfinite(z[i, held]):
            placed[i] = (
                held,
                f"doubled by another family's track; paired with its family ({family[i]})",
            )
        else:
            placed[i] = stem, "doubled by another family's track; the one stem these notes sound in"
    return placed if any(s == stem for s, _ in placed.values()) else {}


def _fill_in(i: int, placing: _Placing) -> tuple[int | None, str | None]:
    """A stem for a track without a pick of its own: its family's, or its best by a strong z."""
    z, u, family, anchors, doubled = (
        placing.z[i], placing.u[i], placing.family, placing.anchors, placing.doubled
    )  # fmt: skip
    held = _family_stem(i, family, anchors)
    if held is not None and z[held] >= Z_PLAUSIBLE and z[held] >= z.max() - MARGIN:
        return held, f"paired with its family ({family[i]}), no unique share of its own"
    twins = (
        [] if doubled is None else [int(k) for k in np.flatnonzero(_twinned(doubled)[i]) if k != i]
    )
    if any(family[k] != family[i] for k in twins):
        assert doubled is not None
        # every track playing at least half of these notes may light a stem with them
        sharing = [k for k in range(len(family)) if k != i and doubled[i, k] >= SHARED_NOTES]
        placed, note = _beside_twins(z, sharing, anchors)
        if placed is None or _family_elsewhere(i, placed, family, anchors):
            return None, None
        return placed, note
    best = int(np.argmax(z))
    if _family_elsewhere(i, best, family, anchors):
        return None, None  # the z may be another family's doubling
    others = np.delete(z, best)
    if z[best] < Z_DOUBLED or (len(others) and z[best] - others.max() < MARGIN):
        return None, None
    if len(others) and (np.delete(u, best) >= U_STRONG).any():
        return None, None  # another stem credits the track a share: the z may be a doubling's
    return best, "doubled: another track explains the same part of the stem"


def _family_stem(i: int, family: Sequence[str | None], anchors: dict[int, int]) -> int | None:
    """The one stem the placed members of track ``i``'s family sit in, or ``None``."""
    if family[i] is None:
        return None
    held = {stem for k, stem in anchors.items() if k != i and family[k] == family[i]}
    return held.pop() if len(held) == 1 else None


def _by_category(i: int, placing: _Placing) -> tuple[int | None, str | None]:
    """The category prior, for a track the evidence left unplaced: its family's stem.

    Studios print an instrument family into one stem, so a track too quiet or too short for
    the content to place (a few notes under a loud band) joins the one stem its family's other
    tracks were placed in. Only when every stem with audio already holds a placed track (a cue
    with a stem per track, as Slakh's, leaves this track's own stem free) and no other stem
    clearly holds the notes (``Z_VERIFY`` and ``MARGIN`` above the family's stem).
    """
    z, family, anchors = placing.z[i], placing.family, placing.anchors
    held = _family_stem(i, family, anchors)
    if held is None or not np.isfinite(z[held]) or not placing.live <= set(anchors.values()):
        return None, None
    others = np.delete(z, held)
    if len(others) and others.max() >= Z_VERIFY and others.max() - z[held] >= MARGIN:
        return None, None
    return held, (
        f"paired with its family ({family[i]}) by category: the content cannot place it, "
        "and every stem holds placed tracks"
    )


def _family_elsewhere(
    i: int, stem: int, family: Sequence[str | None], anchors: dict[int, int]
) -> bool:
    """Whether a member of track ``i``'s family is placed in another stem than ``stem``."""
    return family[i] is not None and any(
        family[k] == family[i] and placed != stem for k, placed in anchors.items() if k != i
    )


def _beside_twins(
    z: np.ndarray, sharing: Sequence[int], anchors: dict[int, int]
) -> tuple[int | None, str | None]:
    """The stem of a track whose notes another family's track plays too (its *twin*).

    Twins have the same z at every stem: by itself the audio cannot tell which stem holds which.
    Once every track ``sharing`` at least half of these notes is placed, their stems account for
    the notes there; of the other stems, one that clearly follows the notes (``Z_VERIFY``,
    ``MARGIN`` above the rest) holds this track. Anything less (a track sharing the notes not
    placed yet, no stem or two standing out, or the notes heard only where the twins are, which
    a quiet instrument masked by its twin also gives): no stem.
    """
    if any(k not in anchors for k in sharing):
        return None, None
    covered = sorted({anchors[k] for k in sharing})
    free = [s for s in range(len(z)) if s not in covered]
    if not free:
        return None, None
    zf = z[free]
    best = int(np.argmax(zf))
    runner = float(np.delete(zf, best).max()) if len(free) > 1 else -np.inf
    if zf[best] < Z_VERIFY or zf[best] - runner < MARGIN:
        return None, None
    placed = ", ".join(str(s + 1) for s in covered)
    return free[
        best
    ], f"doubled by another family's track (in stem {placed}); the notes sound here too"


def decide(
    name_choice: Sequence[int | None],
    content: ContentEvidence,
    *,
    stem_names: Sequence[str],
    name_source: str = "name",
    families: Sequence[str | None] | None = None,
    doubled: np.ndarray | None = None,
    kit: np.ndarray | None = None,
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
    families : sequence of str or None, optional
        Each track's instrument family (its category; ``None`` where unknown).
    doubled : numpy.ndarray, optional
        :func:`kmidi_ingest.doubling.doubled_shares` of the tracks, shape ``(n, n)``.
    kit : numpy.ndarray, optional
        :func:`kmidi_ingest.kit.kit_evidence` of the tracks × stems (NaN for pitched tracks).
    """
    out: list[Decision] = []
    # With one track there is nothing to share the credit with: its z must decide alone. With
    # several tracks of one song, every stem follows every track's beats and chords somewhat, and
    # only the unique share (the joint fit) tells which stem holds which track.
    alone = int(np.isfinite(content.z).any(axis=1).sum()) <= 1
    picks = content_picks(content, families=families, doubled=doubled)
    for i, proposed in enumerate(name_choice):
        z, u = content.z[i], content.unique[i]
        chosen, note = picks[i]
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
        filled = note if stem == chosen and by == "content" else None
        verdict = _verdict(i, stem, by, content, stem_names, alone=alone, filled=filled)
        row = None if kit is None or by not in ("content", "none") else kit[i]
        hit = None if row is None else _kit_choice(row)
        if row is not None and hit is not None and hit != stem and verdict.verified is not True:
            note = f"the kit's hats and cymbals are in this stem (kit z {row[hit]:.1f})"
            verdict = _verdict(i, hit, "content", content, stem_names, alone=alone, filled=note)
        out.append(verdict)
    return out


def _kit_choice(row: np.ndarray) -> int | None:
    """The stem a drum track's kit evidence clearly picks (``Z_PLAUSIBLE``, ``KIT_MARGIN``)."""
    values = np.where(np.isfinite(row), row, -np.inf)
    if not len(values) or not np.isfinite(values).any():
        return None
    best = int(np.argmax(values))
    others = np.delete(values, best)
    if values[best] < Z_PLAUSIBLE or (len(others) and values[best] - others.max() < KIT_MARGIN):
        return None
    return best


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
    filled: str | None = None,
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
        # and no other stem follows the notes far better on its own
        and (runner_z is None or runner_z <= z + MARGIN)
    )
    if filled is not None:  # paired by its family or as a doubled part: never identity
        return replace(
            base, verified=None, reason=f"{filled} (z {z:.1f}, unique share {share or 0:.4f})"
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


# ---------------------------------------------------------------------------------------------
# A part owning several stems (desk stems): used by kmidi_ingest.pairing
# ---------------------------------------------------------------------------------------------


def alone_in_cue(content: ContentEvidence) -> bool:
    """Whether at most one track has content evidence (its z then decides alone, see :func:`decide`)."""
    return int(np.isfinite(content.z).any(axis=1).sum()) <= 1


DESK_Z_RATIO = 0.5  # a desk stem follows the part's notes at least this share of its best desk's z


def contradicted(
    i: int,
    stem: int,
    content: ContentEvidence,
    *,
    owners: Sequence[int],
    desks: Sequence[int] = (),
) -> str | None:
    """Why the content says ``stem`` is not (also) track ``i``'s, or ``None`` when it does not.

    For an additional stem of a part (a desk stem; ``desks`` are all the stems its name gives
    it): the stem is contradicted when another track is paired with it (``owners``), when the
    part's notes were comparable and the stem does not follow them (``z`` < :data:`Z_REJECT`, or
    below :data:`DESK_Z_RATIO` of the part's best identity-strong ``z`` over ``desks``: every
    stem of a song follows its notes somewhat), or when another track explains it clearly
    better (identity-strong ``z`` ``MARGIN`` above the part's, or a unique share ≥
    :data:`U_VERIFY` and :data:`U_RATIO` times the part's). No content evidence contradicts
    nothing.
    """
    if any(k != i for k in owners):
        return "paired with another track"
    z, u = content.z[:, stem], content.unique[:, stem]
    zi = float(z[i])
    ui = float(u[i]) if np.isfinite(u[i]) else 0.0
    if np.isfinite(zi) and zi < Z_REJECT:
        return f"the stem does not follow the notes (z {zi:.1f})"
    best = max((float(content.z[i, j]) for j in desks if np.isfinite(content.z[i, j])), default=0.0)
    if np.isfinite(zi) and best >= Z_VERIFY and zi < DESK_Z_RATIO * best:
        return (
            f"the stem follows the notes far less than another desk (z {zi:.1f} against {best:.1f})"
        )
    for k in range(len(z)):
        if k == i:
            continue
        zk, uk = float(z[k]), float(u[k])
        if np.isfinite(zk) and zk >= Z_VERIFY and (not np.isfinite(zi) or zk - zi >= MARGIN):
            return f"track {k} explains the stem better (z {zk:.1f} against {zi:.1f})"
        if np.isfinite(uk) and uk >= U_VERIFY and uk >= U_RATIO * max(ui, 0.0):
            return f"track {k} explains the stem better (unique share {uk:.4f} against {ui:.4f})"
    return None


def sibling_verdict(
    i: int,
    stem: int,
    by: str,
    content: ContentEvidence,
    stem_names: Sequence[str],
    *,
    siblings: Sequence[int],
) -> Decision:
    """The :class:`Decision` of one of the stems a part owns, its other stems no rivals.

    The same rule as :func:`decide`'s verdict, with the part's other stems (``siblings``, e.g.
    the other desks, which rightly hold the same notes) left out of the runner-up and margin:
    each pair is verified on its own evidence against every stem the part does not own.
    """
    others = [j for j in siblings if j != stem]
    z, unique = content.z.copy(), content.unique.copy()
    z[i, others] = np.nan
    unique[i, others] = np.nan
    masked = replace(content, z=z, unique=unique)
    return _verdict(i, stem, by, masked, stem_names, alone=alone_in_cue(content))
