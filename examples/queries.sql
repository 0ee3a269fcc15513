-- Example questions for analysts. Every query runs on SQLite and PostgreSQL.
-- Views: notes_view (one row per note with its track, category, stem, cue and file) and
-- cue_summary (one row per cue with its counts). Only fully ingested cues appear in the views.

-- 1. Pitch range and note count per instrument category.
SELECT track_category, MIN(pitch) AS lowest, MAX(pitch) AS highest, COUNT(*) AS notes
FROM notes_view
GROUP BY track_category
ORDER BY notes DESC;

-- 2. Notes per bar in one cue.
SELECT start_bar, COUNT(*) AS notes
FROM notes_view
WHERE cue_name = '1M01 Opening'
GROUP BY start_bar
ORDER BY start_bar;

-- 3. Tempo changes per cue, in order.
SELECT c.name AS cue, f.file_name, t.tick, t.time_s, t.bpm, t.bar
FROM tempo_changes t
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
ORDER BY c.name, f.file_name, t.tick;

-- 4. Tracks without a stem (unmatched), with their best score.
SELECT c.name AS cue, t.name AS track, m.score
FROM track_matches m
JOIN midi_tracks t ON t.id = m.track_id
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
WHERE m.audio_file_id IS NULL
ORDER BY c.name, t.track_index;

-- 5. Per-cue overview.
SELECT * FROM cue_summary ORDER BY cue_path;
