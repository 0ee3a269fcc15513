-- Example questions for analysts. Every query runs unchanged on SQLite and PostgreSQL
-- (tests/test_queries.py runs each one on both against the ingested examples/cues).
-- Views: notes_view (one row per note with its track, category, primary stem, cue and file) and
-- cue_summary (one row per cue with its counts). Only fully ingested cues appear in the views.
-- Units: *_s seconds, *_tick MIDI ticks, tempo_us microseconds per quarter note, bpm quarter notes
-- per minute; bars and beats are 1-based; pitch is the MIDI note number (60 = middle C).

-- 1. Pitch range and note count per instrument category.
SELECT track_category, MIN(pitch) AS lowest, MAX(pitch) AS highest, COUNT(*) AS notes
FROM notes_view
GROUP BY track_category
ORDER BY notes DESC, track_category;

-- 2. Notes per bar in one cue.
SELECT start_bar, COUNT(*) AS notes
FROM notes_view
WHERE cue_name = '1M01 Opening'
GROUP BY start_bar
ORDER BY start_bar;

-- 3. Tempo changes per cue, in order (the effective tempo map of each MIDI file).
SELECT c.name AS cue, f.file_name, t.tick, t.time_s, t.bpm, t.bar, t.beat
FROM tempo_changes t
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
WHERE c.status = 'complete'
ORDER BY c.name, f.file_name, t.tick;

-- 4. Instrument tracks that found no stem, with the best fuzzy score they reached.
SELECT c.name AS cue, t.name AS track, t.category, m.method, m.score
FROM track_matches m
JOIN midi_tracks t ON t.id = m.track_id
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
WHERE m.audio_file_id IS NULL AND c.status = 'complete'
ORDER BY c.name, t.track_index;

-- 5. Stems whose match to a MIDI track is unverified (no onset check ran, or it failed).
SELECT c.name AS cue, a.name AS stem, t.name AS track, m.method, m.score, m.verified
FROM track_matches m
JOIN audio_files a ON a.id = m.audio_file_id
JOIN midi_tracks t ON t.id = m.track_id
JOIN cues c ON c.id = a.cue_id
WHERE (m.verified IS NULL OR m.verified = FALSE) AND c.status = 'complete'
ORDER BY c.name, a.name, t.name;

-- 6. The ten busiest tracks: notes, and notes per second over the track's length.
SELECT cue_name, track_name, COUNT(*) AS notes,
       COUNT(*) / NULLIF(MAX(end_s) - MIN(start_s), 0) AS notes_per_s
FROM notes_view
GROUP BY cue_name, track_id, track_name
ORDER BY notes DESC, cue_name, track_name
LIMIT 10;

-- 7. Loudness and length of the notes per instrument category (velocity 1..127, seconds).
SELECT track_category, AVG(velocity) AS mean_velocity, AVG(duration_s) AS mean_duration_s,
       MAX(duration_s) AS longest_s, SUM(CASE WHEN end_inferred THEN 1 ELSE 0 END) AS never_released
FROM notes_view
GROUP BY track_category
ORDER BY track_category;

-- 8. What is sounding two seconds into a cue (notes held at t = 2.0 s).
SELECT track_name, stem_name, pitch, velocity, start_s, end_s, start_bar, start_beat
FROM notes_view
WHERE cue_name = '1M01 Opening' AND start_s <= 2.0 AND end_s > 2.0
ORDER BY track_name, pitch;

-- 9. Controller usage per cue: which CC numbers move, how often, over which value range.
SELECT c.name AS cue, cc.controller, COUNT(*) AS events, MIN(cc.value) AS lowest,
       MAX(cc.value) AS highest, MIN(cc.time_s) AS first_s
FROM midi_cc cc
JOIN midi_tracks t ON t.id = cc.track_id
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
WHERE c.status = 'complete'
GROUP BY c.name, cc.controller
ORDER BY c.name, cc.controller;

-- 10. Per-cue overview: MIDI against audio length, matched tracks, errors.
SELECT cue_path, midi_files, instrument_tracks, notes, stems, final_mixes, matched_tracks,
       midi_length_s, audio_length_s, errors
FROM cue_summary
ORDER BY cue_path;

-- 11. Instrument parts per MIDI file: a track holding several instruments on several channels
--     (a format-0 file) is one part per channel with notes, each with its own program and stem.
SELECT c.name AS cue, f.file_name, f.midi_format, COUNT(DISTINCT t.track_index) AS tracks,
       COUNT(*) AS parts, SUM(CASE WHEN t.is_drum THEN 1 ELSE 0 END) AS drum_parts,
       SUM(CASE WHEN m.audio_file_id IS NOT NULL THEN 1 ELSE 0 END) AS parts_with_a_stem
FROM midi_tracks t
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
LEFT JOIN track_matches m ON m.track_id = t.id AND m.stem_rank = 0
WHERE NOT t.is_conductor AND c.status = 'complete'
GROUP BY c.name, f.file_name, f.midi_format
ORDER BY c.name, f.file_name;

-- 12. Stems per matched part: a part may own several stems (the desk stems violin1 … violin4 of
--     one violin part); its primary pair has stem_rank 0, the further ones 1, 2, ….
SELECT c.name AS cue, t.part_name, COUNT(*) AS stems,
       MIN(CASE WHEN m.stem_rank = 0 THEN a.name END) AS primary_stem,
       SUM(CASE WHEN m.verified = TRUE THEN 1 ELSE 0 END) AS verified_pairs
FROM track_matches m
JOIN audio_files a ON a.id = m.audio_file_id
JOIN midi_tracks t ON t.id = m.track_id
JOIN cues c ON c.id = a.cue_id
WHERE c.status = 'complete'
GROUP BY c.name, t.id, t.part_name
ORDER BY c.name, t.part_name, t.id;
