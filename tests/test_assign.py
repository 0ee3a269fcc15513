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


PIANO, BASS = "Piano", "Bass"


def test_a_doubled_part_joins_its_familys_stem_and_is_not_verified():
    # track 0 holds Brass by its own unique share; track 1, of the same family, plays the same
    # line (no variance of its own in the joint fit) and its z there is plausible and near its best
    ev = evidence([[1.0, 7.5, 2.0], [1.0, 5.0, 6.0]], [[0.0, 0.03, 0.0], [0.0, 0.0, 0.0]])
    got = assign.decide([None, None], ev, stem_names=STEMS, families=[PIANO, PIANO])
    assert [(d.stem_index, d.decided_by, d.verified) for d in got] == [
        (1, "content", True),
        (1, "content", None),
    ]
    assert got[1].reason == (
        "paired with its family (Piano), no unique share of its own (z 5.0, unique share 0.0000)"
    )
    # without the family the best z (6.0 at Drums, only 1.0 above Brass) decides nothing
    (_, alone) = assign.decide([None, None], ev, stem_names=STEMS, families=[PIANO, BASS])
    assert (alone.stem_index, alone.verified) == (None, None)


def test_the_same_notes_in_two_families_stay_unpaired():
    # a piano and a bass playing the same notes have the same z everywhere: the audio cannot tell
    # which stem holds which, so abstaining is right
    z = [[9.3, 7.2, 2.4], [9.3, 7.2, 2.4]]
    ev = evidence(z, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    doubled = np.array([[0.0, 1.0], [1.0, 0.0]])
    got = assign.decide([None, None], ev, stem_names=STEMS, families=[PIANO, BASS], doubled=doubled)
    assert [(d.stem_index, d.decided_by) for d in got] == [(None, "none"), (None, "none")]
    # the same z without doubled notes (a part of its own no other track explains): the strong
    # best z (9.3, 2.1 above the rest) pairs it, unverified, as a doubled part
    apart = assign.decide(
        [None, None], ev, stem_names=STEMS, families=[PIANO, BASS], doubled=np.zeros((2, 2))
    )
    assert [(d.stem_index, d.verified) for d in apart] == [(0, None), (0, None)]
    assert apart[0].reason == (
        "doubled: another track explains the same part of the stem (z 9.3, unique share 0.0000)"
    )


def test_twins_none_placed_go_where_their_notes_are_heard_and_with_their_family():
    # a piano (track 0) and a bass (track 1) play the same notes, heard in Strings only; track 2,
    # another bass, holds Brass by its own share: the bass twin goes with its family, the piano
    # to the one stem the notes sound in; neither is verified
    z = [[8.5, 3.6, 1.0], [8.5, 3.6, 1.0], [1.0, 9.0, 1.0]]
    u = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.03, 0.0]]
    doubled = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    got = assign.decide(
        [None] * 3, evidence(z, u), stem_names=STEMS, families=[PIANO, BASS, BASS], doubled=doubled
    )
    assert [(d.stem_index, d.verified) for d in got] == [(0, None), (1, None), (1, True)]
    assert got[0].reason == (
        "doubled by another family's track; the one stem these notes sound in"
        " (z 8.5, unique share 0.0000)"
    )
    assert got[1].reason.startswith("doubled by another family's track; paired with its family")
    # heard in two stems (Brass reaches 4 too): which twin is where cannot be told
    z2 = [[8.5, 4.2, 1.0], [8.5, 4.2, 1.0], [1.0, 1.0, 9.0]]
    u2 = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.03]]
    got = assign.decide(
        [None] * 3, evidence(z2, u2), stem_names=STEMS, families=[PIANO, BASS, "Drums"],
        doubled=doubled,
    )  # fmt: skip
    assert [d.stem_index for d in got] == [None, None, 2]
    # both twins' families sit in Brass: nothing would be in Strings, so neither is paired
    z3 = [[8.5, 3.6, 1.0], [8.5, 3.6, 1.0], [1.0, 9.0, 1.0], [1.0, 9.0, 1.0]]
    u3 = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.03, 0.0], [0.0, 0.03, 0.0]]
    doubled4 = np.zeros((4, 4))
    doubled4[0, 1] = doubled4[1, 0] = 1.0
    got = assign.decide(
        [None] * 4, evidence(z3, u3), stem_names=STEMS, families=[PIANO, BASS, PIANO, BASS],
        doubled=doubled4,
    )  # fmt: skip
    assert [d.stem_index for d in got] == [None, None, 1, 1]


def test_the_category_prior_places_a_track_the_content_cannot_only_when_every_stem_is_held():
    # track 2, a piano with a few notes, has no usable evidence anywhere; its family's other
    # track is in Strings and every stem holds a placed track: it joins its family, unverified
    z = [[8.0, 1.0, 1.0], [1.0, 8.0, 1.0], [1.0, 1.0, 9.0], [1.4, 2.2, 1.1]]
    u = [[0.03, 0.0, 0.0], [0.0, 0.03, 0.0], [0.0, 0.0, 0.03], [0.0, 0.001, 0.0]]
    families = [PIANO, BASS, "Drums", PIANO]
    got = assign.decide([None] * 4, evidence(z, u), stem_names=STEMS, families=families)
    assert [(d.stem_index, d.verified) for d in got] == [(0, True), (1, True), (2, True), (0, None)]
    assert got[3].reason == (
        "paired with its family (Piano) by category: the content cannot place it, and every"
        " stem holds placed tracks (z 1.4, unique share 0.0000)"
    )
    # a stem per track (as Slakh prints them): Drums holds nothing placed, so the piano's own
    # stem may be the free one, and the prior stays out
    free = [row[:] for row in z[:2]] + [[1.0, 1.0, 2.0], z[3]]
    ufree = [row[:] for row in u[:2]] + [[0.0, 0.0, 0.0], u[3]]
    got = assign.decide([None] * 4, evidence(free, ufree), stem_names=STEMS, families=families)
    assert [d.stem_index for d in got] == [0, 1, None, None]
    # another stem clearly holds the notes (z 4.6, 3.2 above the family's stem): no prior
    clear = z[:3] + [[1.4, 4.6, 1.1]]
    unone = u[:3] + [[0.0, 0.0, 0.0]]
    got = assign.decide([None] * 4, evidence(clear, unone), stem_names=STEMS, families=families)
    assert got[3].stem_index is None
    # ... while at 3.6 (2.2 above) it does not clearly hold them: the prior places the piano
    near = z[:3] + [[1.4, 3.6, 1.1]]
    got = assign.decide([None] * 4, evidence(near, unone), stem_names=STEMS, families=families)
    assert got[3].stem_index == 0


def test_a_strong_unique_share_picks_below_a_higher_z_but_is_not_verified():
    # Strings holds the track (unique share 0.008, nothing elsewhere) although Brass, where
    # another family doubles its chords, follows the notes better by z
    ev = evidence([[7.0, 10.7, 3.9], [1.0, 9.0, 1.0]], [[0.008, 0.0, 0.0], [0.0, 0.04, 0.0]])
    got = assign.decide([None, None], ev, stem_names=STEMS, families=["Strings", BASS])
    assert (got[0].stem_index, got[0].decided_by, got[0].verified) == (0, "content", None)
    assert got[0].reason.startswith("the unique share is here, but another stem follows")
    assert (got[1].stem_index, got[1].verified) == (1, True)


def test_a_weak_pick_against_its_family_moves_to_the_familys_stem():
    ev = evidence(
        [[8.0, 1.0, 2.0], [7.5, 1.0, 2.5], [3.2, 1.0, 3.5]],
        [[0.03, 0.0, 0.0], [0.02, 0.0, 0.0], [0.0, 0.0, 0.003]],
    )
    families = ["Strings", "Strings", "Strings"]
    got = assign.decide([None] * 3, ev, stem_names=STEMS, families=families)
    assert [d.stem_index for d in got] == [0, 0, 0]
    assert got[2].verified is None and got[2].reason.startswith("moved to the stem of its family")
    # its z at the family's stem too low: the weak pick is dropped rather than kept
    low = evidence(
        [[8.0, 1.0, 2.0], [7.5, 1.0, 2.5], [2.5, 1.0, 3.5]],
        [[0.03, 0.0, 0.0], [0.02, 0.0, 0.0], [0.0, 0.0, 0.003]],
    )
    assert assign.decide([None] * 3, low, stem_names=STEMS, families=families)[2].stem_index is None


def test_a_click_with_a_small_share_everywhere_stays_unpaired():
    # a click follows every rhythmic stem a little: the best z agrees with the largest share, but
    # that share is not twice the others' (the examples' 1M01 Click, measured values)
    ev = evidence(
        [[1.94, 18.56, 0.65], [16.42, 3.17, 3.58], [6.60, 4.68, 4.28]],
        [[0.0, 0.084, 0.0006], [0.12, 0.0, 0.0005], [0.0015, 0.0009, 0.00098]],
    )
    got = assign.decide([1, 0, None], ev, stem_names=STEMS, families=["Strings", "Brass", "Ticker"])
    assert (got[2].stem_index, got[2].decided_by) == (None, "none")
    # where the largest share is twice the others', the agreeing z (≥ 4, 1.9 above) pairs it
    ev2 = evidence(
        [[1.94, 18.56, 0.65], [16.42, 3.17, 3.58], [6.60, 4.68, 4.28]],
        [[0.0, 0.084, 0.0006], [0.12, 0.0, 0.0005], [0.0015, 0.0007, 0.0006]],
    )
    got2 = assign.decide([1, 0, None], ev2, stem_names=STEMS, families=["S", "B", "T"])
    assert (got2[2].stem_index, got2[2].decided_by) == (0, "content")


def test_a_twin_placed_by_its_own_share_leaves_the_other_stem_where_the_notes_sound():
    # a bass doubles the piano (the coconut_run2 shape): the piano is placed at Brass by a share
    # of its own; the bass's notes sound at Strings too (9.2), which the piano does not explain:
    # the bass is there. Never verified: the audio alone cannot tell twins apart.
    z = [[7.2, 9.2, 2.4], [9.2, 7.2, 2.4]]
    ev = evidence(z, [[0.0, 0.02, 0.0], [0.0, 0.0, 0.0]])
    doubled = np.array([[0.0, 1.0], [1.0, 0.0]])
    got = assign.decide([None, None], ev, stem_names=STEMS, families=[PIANO, BASS], doubled=doubled)
    assert [(d.stem_index, d.verified) for d in got] == [(1, True), (0, None)]
    assert got[1].reason == (
        "doubled by another family's track (in stem 2); the notes sound here too "
        "(z 9.2, unique share 0.0000)"
    )


def test_a_twin_heard_only_where_its_twin_is_stays_unpaired():
    # the notes sound in the piano's stem alone: the bass may be there, or quiet in another stem
    # under the piano's louder copy (seen on rendered cues): no stem rather than a guess
    z = [[10.2, 0.6, 2.7], [10.2, 0.6, 2.7]]
    ev = evidence(z, [[0.05, 0.0, 0.0], [0.0, 0.0, 0.0]])
    doubled = np.array([[0.0, 1.0], [1.0, 0.0]])
    got = assign.decide([None, None], ev, stem_names=STEMS, families=[PIANO, BASS], doubled=doubled)
    assert [d.stem_index for d in got] == [0, None]


def test_a_track_sharing_half_the_notes_accounts_for_its_stem_too():
    # the bass doubles the piano (placed at Strings); a guitar placed at Drums plays 60 % of the
    # bass's notes: Drums lighting up (7.3) is the guitar's doing, and Brass (4.2), the one stem
    # left that follows the notes, holds the bass (the keep_on_rolling shape, seed 16)
    z = [[7.6, 4.2, 1.0], [7.6, 4.2, 7.3], [1.0, 1.0, 8.0]]
    ev = evidence(z, [[0.02, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.03]])
    doubled = np.array([[0.0, 1.0, 0.3], [1.0, 0.0, 0.6], [0.2, 0.2, 0.0]])
    families = [PIANO, BASS, "Electric Guitar"]
    got = assign.decide([None] * 3, ev, stem_names=STEMS, families=families, doubled=doubled)
    assert [d.stem_index for d in got] == [0, 1, 2]
    assert got[1].verified is None
    # without the guitar's share of the notes, Drums would be where the bass sounds
    doubled[1, 2] = 0.3
    got = assign.decide([None] * 3, ev, stem_names=STEMS, families=families, doubled=doubled)
    assert [d.stem_index for d in got] == [0, 2, 2]
    # and with the guitar not placed (weak evidence of its own), the stem its share of the
    # notes lights is unknown: no stem for the bass
    doubled[1, 2] = 0.6
    z[2] = [1.0, 1.0, 3.5]
    ev = evidence(z, [[0.02, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    got = assign.decide([None] * 3, ev, stem_names=STEMS, families=families, doubled=doubled)
    assert got[1].stem_index is None


def test_twins_stay_unpaired_when_the_rest_does_not_single_out_a_stem():
    doubled = np.array([[0.0, 1.0], [1.0, 0.0]])
    shares = [[0.0, 0.0, 0.02], [0.0, 0.0, 0.0]]
    # two other stems follow the notes about equally (4.7, 4.4): which holds the bass is unknown
    ev = evidence([[4.7, 4.4, 5.6], [4.7, 4.4, 5.6]], shares)
    got = assign.decide([None, None], ev, stem_names=STEMS, families=[PIANO, BASS], doubled=doubled)
    assert [d.stem_index for d in got] == [2, None]
    # a plausible but weak other stem (3.3): not clear enough to hold it, too much to say "nowhere"
    ev = evidence([[3.3, 1.0, 9.0], [3.3, 1.0, 9.0]], shares)
    got = assign.decide([None, None], ev, stem_names=STEMS, families=[PIANO, BASS], doubled=doubled)
    assert [d.stem_index for d in got] == [2, None]
