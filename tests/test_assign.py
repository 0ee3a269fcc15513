"""The decision per track: names propose, content confirms, overrules or fills in; identity."""

from __future__ import annotations

import numpy as np

from kmidi_ingest import assign
from kmidi_ingest.content import CURVES, ContentEvidence

STEMS = ("Strings", "Brass", "Drums")


def evidence(z: list[list[float]], unique: list[list[float]] | None = None) -> ContentEvidence:
    zs = np.array(z, dtype=float)
    shape = zs.shape
    return ContentEvidence(
        z=zs,
        score=np.zeros(shape),
        lag_s=np.zeros(shape),
        z_curves=np.full((*shape, len(CURVES)), 3.0),
        notes_in_audio=np.full(shape, 40),
        unique=np.array(unique, dtype=float) if unique is not None else np.zeros(shape),
        reason=tuple((None,) * shape[1] for _ in range(shape[0])),
    )


def test_uninformative_names_are_paired_by_the_joint_fit_and_verified():
    ev = evidence(
        [[6.0, 5.0, 1.0], [5.5, 6.5, 1.0]],
        [[0.03, 0.001, 0.0], [0.0005, 0.02, 0.0]],
    )
    got = assign.decide([None, None], ev, stem_names=STEMS)
    assert [(d.stem_index, d.decided_by, d.verified) for d in got] == [
        (0, "content", True),
        (1, "content", True),
    ]
    assert got[0].runner_up == 1 and got[0].margin == 1.0 and got[0].content_p < 1e-3


def test_several_tracks_may_share_a_stem():
    ev = evidence([[1.0, 1.0, 7.0]] * 3, [[0.0, 0.0, 0.02]] * 3)  # kick, snare, hats → Drums
    got = assign.decide([None, None, None], ev, stem_names=STEMS)
    assert [d.stem_index for d in got] == [2, 2, 2] and all(d.verified for d in got)


def test_clear_content_overrules_a_misleading_name_and_weak_content_does_not():
    clear = evidence([[1.0, 8.0, 0.5]], [[0.0, 0.04, 0.0]])
    (moved,) = assign.decide([0], clear, stem_names=STEMS)
    assert (moved.stem_index, moved.decided_by, moved.verified) == (1, "content", True)
    weak = evidence([[2.5, 3.2, 0.5]], [[0.0015, 0.0025, 0.0]])
    (kept,) = assign.decide([0], weak, stem_names=STEMS)
    assert (kept.stem_index, kept.decided_by) == (0, "name")
    assert kept.verified is not True


def test_a_lone_track_is_judged_by_z_and_margin():
    # one track: nothing shares the credit, so z and the margin over the runner-up decide
    (true,) = assign.decide([0], evidence([[4.9, 1.1]]), stem_names=STEMS[:2])
    assert true.verified is True and true.decided_by == "name+content"
    # a band playing in unison: both stems explain the notes; abstain with the reason
    (unison,) = assign.decide([0], evidence([[4.5, 3.9]]), stem_names=STEMS[:2])
    assert unison.verified is None and "ambiguous" in str(unison.reason)
    # the notes are in the other stem: the named stem is not verified, the content moves it
    (swapped,) = assign.decide([0], evidence([[1.1, 4.9]]), stem_names=STEMS[:2])
    assert (swapped.stem_index, swapped.decided_by, swapped.verified) == (1, "content", True)
    # neither stem holds the notes: the name's pair stands and is refused
    (cross,) = assign.decide([0], evidence([[1.0, 2.4]]), stem_names=STEMS[:2])
    assert (cross.stem_index, cross.verified) == (0, False)


def test_no_evidence_keeps_the_name_with_a_reason():
    ev = evidence([[np.nan, np.nan, np.nan]])
    ev = ContentEvidence(**{**ev.__dict__, "reason": (("stem silent",) * 3,)})
    (d,) = assign.decide([1], ev, stem_names=STEMS)
    assert (d.stem_index, d.decided_by, d.verified, d.reason) == (1, "name", None, "stem silent")


def test_a_doubled_part_follows_its_twin():
    # the joint fit credits a doubled line to one track only; the other follows it when their
    # z across the stems is the same and that stem is its own best
    ev = evidence([[1.0, 6.0, 0.5], [1.1, 6.1, 0.6]], [[0.0, 0.02, 0.0], [0.0, 0.0, 0.0]])
    got = assign.decide([None, None], ev, stem_names=STEMS)
    assert [(d.stem_index, d.decided_by) for d in got] == [(1, "content"), (1, "content")]
    assert got[1].verified is None and "doubled" in str(got[1].reason)
