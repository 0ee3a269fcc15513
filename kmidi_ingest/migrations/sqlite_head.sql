-- revision: 0013
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
)
;
CREATE TABLE ingest_runs (
	id INTEGER NOT NULL, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	status VARCHAR(16) NOT NULL, 
	root TEXT NOT NULL, 
	sample_rate_hz INTEGER NOT NULL, 
	matcher VARCHAR(16) NOT NULL, 
	version VARCHAR(32) NOT NULL, 
	parameters_json TEXT NOT NULL, 
	cues_found INTEGER NOT NULL, 
	cues_ingested INTEGER NOT NULL, 
	cues_skipped INTEGER NOT NULL, 
	cues_failed INTEGER NOT NULL, 
	error_count INTEGER NOT NULL, 
	elapsed_s FLOAT, 
	CONSTRAINT pk_ingest_runs PRIMARY KEY (id)
)
;
CREATE TABLE llm_cache (
	id INTEGER NOT NULL, 
	cache_key VARCHAR(64) NOT NULL, 
	model TEXT NOT NULL, 
	request_json TEXT NOT NULL, 
	response_json TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_llm_cache PRIMARY KEY (id), 
	CONSTRAINT uq_llm_cache_cache_key UNIQUE (cache_key)
)
;
CREATE TABLE cues (
	id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	rel_path TEXT NOT NULL, 
	abs_path TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	stat_fingerprint VARCHAR(64) NOT NULL, 
	content_fingerprint VARCHAR(64) NOT NULL, 
	sample_rate_hz INTEGER NOT NULL, 
	run_id INTEGER, 
	midi_file_count INTEGER NOT NULL, 
	stem_count INTEGER NOT NULL, 
	final_mix_count INTEGER NOT NULL, 
	error_count INTEGER NOT NULL, 
	midi_offset_s FLOAT, 
	ingested_at DATETIME NOT NULL, 
	CONSTRAINT pk_cues PRIMARY KEY (id), 
	CONSTRAINT fk_cues_run_id_ingest_runs FOREIGN KEY(run_id) REFERENCES ingest_runs (id) ON DELETE SET NULL, 
	CONSTRAINT uq_cues_rel_path UNIQUE (rel_path)
)
;
CREATE TABLE audio_files (
	id INTEGER NOT NULL, 
	cue_id INTEGER NOT NULL, 
	category VARCHAR(32), 
	category_source VARCHAR(16), 
	name TEXT NOT NULL, 
	group_key TEXT NOT NULL, 
	channel_count INTEGER NOT NULL, 
	channel_layout TEXT NOT NULL, 
	source_sample_rate_hz INTEGER NOT NULL, 
	duration_s FLOAT NOT NULL, 
	peak FLOAT NOT NULL, 
	rms FLOAT NOT NULL, 
	CONSTRAINT pk_audio_files PRIMARY KEY (id), 
	CONSTRAINT fk_audio_files_cue_id_cues FOREIGN KEY(cue_id) REFERENCES cues (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_audio_files_cue_id ON audio_files (cue_id)
;
CREATE TABLE final_mixes (
	id INTEGER NOT NULL, 
	cue_id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	group_key TEXT NOT NULL, 
	channel_count INTEGER NOT NULL, 
	channel_layout TEXT NOT NULL, 
	source_sample_rate_hz INTEGER NOT NULL, 
	duration_s FLOAT NOT NULL, 
	peak FLOAT NOT NULL, 
	rms FLOAT NOT NULL, 
	CONSTRAINT pk_final_mixes PRIMARY KEY (id), 
	CONSTRAINT fk_final_mixes_cue_id_cues FOREIGN KEY(cue_id) REFERENCES cues (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_final_mixes_cue_id ON final_mixes (cue_id)
;
CREATE TABLE ingest_errors (
	id INTEGER NOT NULL, 
	run_id INTEGER, 
	cue_id INTEGER, 
	cue_path TEXT, 
	file_path TEXT, 
	stage VARCHAR(16) NOT NULL, 
	severity VARCHAR(8) NOT NULL, 
	error_type VARCHAR(64) NOT NULL, 
	message TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_ingest_errors PRIMARY KEY (id), 
	CONSTRAINT fk_ingest_errors_cue_id_cues FOREIGN KEY(cue_id) REFERENCES cues (id) ON DELETE CASCADE, 
	CONSTRAINT fk_ingest_errors_run_id_ingest_runs FOREIGN KEY(run_id) REFERENCES ingest_runs (id) ON DELETE CASCADE
)
;
CREATE TABLE midi_files (
	id INTEGER NOT NULL, 
	cue_id INTEGER NOT NULL, 
	rel_path TEXT NOT NULL, 
	file_name TEXT NOT NULL, 
	size_bytes BIGINT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	midi_format SMALLINT NOT NULL, 
	timing VARCHAR(8) NOT NULL, 
	ticks_per_beat INTEGER, 
	smpte_fps FLOAT, 
	smpte_ticks_per_frame INTEGER, 
	smpte_offset_s FLOAT, 
	track_count INTEGER NOT NULL, 
	note_count INTEGER NOT NULL, 
	length_tick BIGINT NOT NULL, 
	length_s FLOAT NOT NULL, 
	lenient BOOLEAN NOT NULL, 
	CONSTRAINT pk_midi_files PRIMARY KEY (id), 
	CONSTRAINT fk_midi_files_cue_id_cues FOREIGN KEY(cue_id) REFERENCES cues (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_midi_files_cue_id ON midi_files (cue_id)
;
CREATE TABLE audio_channels (
	id INTEGER NOT NULL, 
	audio_file_id INTEGER, 
	final_mix_id INTEGER, 
	channel_order INTEGER NOT NULL, 
	label VARCHAR(8) NOT NULL, 
	rel_path TEXT NOT NULL, 
	file_name TEXT NOT NULL, 
	file_channel INTEGER NOT NULL, 
	file_channels INTEGER NOT NULL, 
	size_bytes BIGINT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	audio_format VARCHAR(16) NOT NULL, 
	subtype VARCHAR(16) NOT NULL, 
	sample_rate_hz INTEGER NOT NULL, 
	frames BIGINT NOT NULL, 
	duration_s FLOAT NOT NULL, 
	peak FLOAT NOT NULL, 
	rms FLOAT NOT NULL, 
	in_mono BOOLEAN NOT NULL, 
	CONSTRAINT pk_audio_channels PRIMARY KEY (id), 
	CONSTRAINT ck_audio_channels_one_owner CHECK ((audio_file_id IS NULL) <> (final_mix_id IS NULL)), 
	CONSTRAINT fk_audio_channels_audio_file_id_audio_files FOREIGN KEY(audio_file_id) REFERENCES audio_files (id) ON DELETE CASCADE, 
	CONSTRAINT fk_audio_channels_final_mix_id_final_mixes FOREIGN KEY(final_mix_id) REFERENCES final_mixes (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_audio_channels_audio_file_id ON audio_channels (audio_file_id)
;
CREATE INDEX ix_audio_channels_final_mix_id ON audio_channels (final_mix_id)
;
CREATE TABLE audio_features (
	id INTEGER NOT NULL, 
	audio_file_id INTEGER, 
	final_mix_id INTEGER, 
	kind VARCHAR(16) NOT NULL, 
	sample_rate_hz INTEGER NOT NULL, 
	n_fft INTEGER NOT NULL, 
	hop_length INTEGER NOT NULL, 
	n_mels INTEGER NOT NULL, 
	fmin_hz FLOAT NOT NULL, 
	fmax_hz FLOAT NOT NULL, 
	db_ref FLOAT NOT NULL, 
	db_amin FLOAT NOT NULL, 
	centered BOOLEAN NOT NULL, 
	dtype VARCHAR(16) NOT NULL, 
	encoding VARCHAR(16) NOT NULL, 
	n_frames INTEGER NOT NULL, 
	byte_count BIGINT NOT NULL, 
	chunk_count INTEGER NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, codec VARCHAR(64), 
	CONSTRAINT pk_audio_features PRIMARY KEY (id), 
	CONSTRAINT ck_audio_features_one_owner CHECK ((audio_file_id IS NULL) <> (final_mix_id IS NULL)), 
	CONSTRAINT fk_audio_features_audio_file_id_audio_files FOREIGN KEY(audio_file_id) REFERENCES audio_files (id) ON DELETE CASCADE, 
	CONSTRAINT fk_audio_features_final_mix_id_final_mixes FOREIGN KEY(final_mix_id) REFERENCES final_mixes (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_audio_features_audio_file_id ON audio_features (audio_file_id)
;
CREATE INDEX ix_audio_features_final_mix_id ON audio_features (final_mix_id)
;
CREATE TABLE key_signatures (
	id INTEGER NOT NULL, 
	midi_file_id INTEGER NOT NULL, 
	"key" VARCHAR(8) NOT NULL, 
	tick BIGINT NOT NULL, 
	time_s FLOAT NOT NULL, 
	track_index INTEGER NOT NULL, 
	CONSTRAINT pk_key_signatures PRIMARY KEY (id), 
	CONSTRAINT fk_key_signatures_midi_file_id_midi_files FOREIGN KEY(midi_file_id) REFERENCES midi_files (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_key_signatures_midi_file_id ON key_signatures (midi_file_id)
;
CREATE TABLE markers (
	id INTEGER NOT NULL, 
	midi_file_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	text TEXT NOT NULL, 
	bar INTEGER, 
	beat FLOAT, 
	tick BIGINT NOT NULL, 
	time_s FLOAT NOT NULL, 
	track_index INTEGER NOT NULL, 
	CONSTRAINT pk_markers PRIMARY KEY (id), 
	CONSTRAINT fk_markers_midi_file_id_midi_files FOREIGN KEY(midi_file_id) REFERENCES midi_files (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_markers_midi_file_id ON markers (midi_file_id)
;
CREATE TABLE midi_tracks (
	id INTEGER NOT NULL, 
	midi_file_id INTEGER NOT NULL, 
	track_index INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	is_conductor BOOLEAN NOT NULL, 
	channel SMALLINT, 
	program SMALLINT, 
	is_drum BOOLEAN NOT NULL, 
	category VARCHAR(32), 
	category_source VARCHAR(16), 
	note_count INTEGER NOT NULL, 
	sysex_count INTEGER NOT NULL, 
	stray_note_off_count INTEGER NOT NULL, 
	end_tick BIGINT NOT NULL, 
	end_s FLOAT NOT NULL, part_index INTEGER DEFAULT '0' NOT NULL, part_name TEXT DEFAULT '' NOT NULL, 
	CONSTRAINT pk_midi_tracks PRIMARY KEY (id), 
	CONSTRAINT fk_midi_tracks_midi_file_id_midi_files FOREIGN KEY(midi_file_id) REFERENCES midi_files (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_midi_tracks_midi_file_id ON midi_tracks (midi_file_id)
;
CREATE TABLE tempo_changes (
	id INTEGER NOT NULL, 
	midi_file_id INTEGER NOT NULL, 
	tempo_us INTEGER NOT NULL, 
	bpm FLOAT NOT NULL, 
	bar INTEGER, 
	beat FLOAT, 
	tick BIGINT NOT NULL, 
	time_s FLOAT NOT NULL, 
	track_index INTEGER NOT NULL, 
	CONSTRAINT pk_tempo_changes PRIMARY KEY (id), 
	CONSTRAINT fk_tempo_changes_midi_file_id_midi_files FOREIGN KEY(midi_file_id) REFERENCES midi_files (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_tempo_changes_midi_file_id ON tempo_changes (midi_file_id)
;
CREATE TABLE time_signatures (
	id INTEGER NOT NULL, 
	midi_file_id INTEGER NOT NULL, 
	bar INTEGER, 
	numerator SMALLINT NOT NULL, 
	denominator SMALLINT NOT NULL, 
	clocks_per_click SMALLINT NOT NULL, 
	notated_32nds_per_beat SMALLINT NOT NULL, 
	tick BIGINT NOT NULL, 
	time_s FLOAT NOT NULL, 
	track_index INTEGER NOT NULL, 
	CONSTRAINT pk_time_signatures PRIMARY KEY (id), 
	CONSTRAINT fk_time_signatures_midi_file_id_midi_files FOREIGN KEY(midi_file_id) REFERENCES midi_files (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_time_signatures_midi_file_id ON time_signatures (midi_file_id)
;
CREATE TABLE audio_feature_chunks (
	id INTEGER NOT NULL, 
	feature_id INTEGER NOT NULL, 
	chunk_index INTEGER NOT NULL, 
	data BLOB NOT NULL, 
	CONSTRAINT pk_audio_feature_chunks PRIMARY KEY (id), 
	CONSTRAINT fk_audio_feature_chunks_feature_id_audio_features FOREIGN KEY(feature_id) REFERENCES audio_features (id) ON DELETE CASCADE, 
	CONSTRAINT uq_audio_feature_chunks_feature_id_chunk_index UNIQUE (feature_id, chunk_index)
)
;
CREATE TABLE midi_aftertouch (
	id INTEGER NOT NULL, 
	track_id INTEGER NOT NULL, 
	pitch SMALLINT, 
	value SMALLINT NOT NULL, 
	channel SMALLINT NOT NULL, 
	tick BIGINT NOT NULL, 
	time_s FLOAT NOT NULL, 
	bar INTEGER, 
	beat FLOAT, 
	CONSTRAINT pk_midi_aftertouch PRIMARY KEY (id), 
	CONSTRAINT fk_midi_aftertouch_track_id_midi_tracks FOREIGN KEY(track_id) REFERENCES midi_tracks (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_midi_aftertouch_track_id ON midi_aftertouch (track_id)
;
CREATE TABLE midi_cc (
	id INTEGER NOT NULL, 
	track_id INTEGER NOT NULL, 
	controller SMALLINT NOT NULL, 
	value SMALLINT NOT NULL, 
	channel SMALLINT NOT NULL, 
	tick BIGINT NOT NULL, 
	time_s FLOAT NOT NULL, 
	bar INTEGER, 
	beat FLOAT, 
	CONSTRAINT pk_midi_cc PRIMARY KEY (id), 
	CONSTRAINT fk_midi_cc_track_id_midi_tracks FOREIGN KEY(track_id) REFERENCES midi_tracks (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_midi_cc_track_id ON midi_cc (track_id)
;
CREATE TABLE midi_pitch_bends (
	id INTEGER NOT NULL, 
	track_id INTEGER NOT NULL, 
	value INTEGER NOT NULL, 
	channel SMALLINT NOT NULL, 
	tick BIGINT NOT NULL, 
	time_s FLOAT NOT NULL, 
	bar INTEGER, 
	beat FLOAT, 
	CONSTRAINT pk_midi_pitch_bends PRIMARY KEY (id), 
	CONSTRAINT fk_midi_pitch_bends_track_id_midi_tracks FOREIGN KEY(track_id) REFERENCES midi_tracks (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_midi_pitch_bends_track_id ON midi_pitch_bends (track_id)
;
CREATE TABLE midi_program_changes (
	id INTEGER NOT NULL, 
	track_id INTEGER NOT NULL, 
	program SMALLINT NOT NULL, 
	channel SMALLINT NOT NULL, 
	tick BIGINT NOT NULL, 
	time_s FLOAT NOT NULL, 
	bar INTEGER, 
	beat FLOAT, 
	CONSTRAINT pk_midi_program_changes PRIMARY KEY (id), 
	CONSTRAINT fk_midi_program_changes_track_id_midi_tracks FOREIGN KEY(track_id) REFERENCES midi_tracks (id) ON DELETE CASCADE
)
;
CREATE INDEX ix_midi_program_changes_track_id ON midi_program_changes (track_id)
;
CREATE INDEX ix_cues_run_id ON cues (run_id)
;
CREATE INDEX ix_ingest_errors_cue_id ON ingest_errors (cue_id)
;
CREATE INDEX ix_ingest_errors_run_id ON ingest_errors (run_id)
;
CREATE TABLE kmidi_database (
	id INTEGER NOT NULL, 
	database_uuid VARCHAR(36) NOT NULL, 
	created_at DATETIME NOT NULL, 
	copied_from_uuid VARCHAR(36), 
	copied_from_url TEXT, 
	copied_at DATETIME, 
	CONSTRAINT pk_kmidi_database PRIMARY KEY (id)
)
;
CREATE UNIQUE INDEX ix_midi_tracks_midi_file_id_part_index ON midi_tracks (midi_file_id, part_index)
;
CREATE INDEX ix_cues_name ON cues (name)
;
CREATE TABLE "track_matches" (
	id INTEGER NOT NULL, 
	track_id INTEGER NOT NULL, 
	audio_file_id INTEGER, 
	method VARCHAR(16) NOT NULL, 
	score FLOAT NOT NULL, 
	fallback_reason TEXT, 
	onset_correlation FLOAT, 
	lag_s FLOAT, 
	verified BOOLEAN, 
	name_score FLOAT, 
	content_score FLOAT, 
	content_z FLOAT, 
	content_p FLOAT, 
	content_lag_s FLOAT, 
	runner_up_audio_file_id INTEGER, 
	margin_z FLOAT, 
	decided_by VARCHAR(24), 
	evidence VARCHAR(48), 
	verify_reason TEXT, 
	stem_rank SMALLINT DEFAULT '0' NOT NULL, 
	CONSTRAINT pk_track_matches PRIMARY KEY (id), 
	CONSTRAINT fk_track_matches_runner_up_audio_file_id_audio_files FOREIGN KEY(runner_up_audio_file_id) REFERENCES audio_files (id) ON DELETE SET NULL, 
	CONSTRAINT fk_track_matches_track_id_midi_tracks FOREIGN KEY(track_id) REFERENCES midi_tracks (id) ON DELETE CASCADE, 
	CONSTRAINT fk_track_matches_audio_file_id_audio_files FOREIGN KEY(audio_file_id) REFERENCES audio_files (id) ON DELETE CASCADE, 
	CONSTRAINT uq_track_matches_track_id_audio_file_id UNIQUE (track_id, audio_file_id), 
	CONSTRAINT uq_track_matches_track_id_stem_rank UNIQUE (track_id, stem_rank)
)
;
CREATE INDEX ix_track_matches_audio_file_id ON track_matches (audio_file_id)
;
CREATE VIEW cue_summary AS
SELECT c.id AS cue_id, c.name AS cue_name, c.rel_path AS cue_path, c.ingested_at,
       (SELECT COUNT(*) FROM midi_files f WHERE f.cue_id = c.id) AS midi_files,
       (SELECT COUNT(*) FROM midi_tracks t JOIN midi_files f ON f.id = t.midi_file_id
         WHERE f.cue_id = c.id AND NOT t.is_conductor) AS instrument_tracks,
       (SELECT COALESCE(SUM(t.note_count), 0) FROM midi_tracks t
         JOIN midi_files f ON f.id = t.midi_file_id WHERE f.cue_id = c.id) AS notes,
       (SELECT COUNT(*) FROM audio_files a WHERE a.cue_id = c.id) AS stems,
       (SELECT COUNT(*) FROM final_mixes x WHERE x.cue_id = c.id) AS final_mixes,
       (SELECT COUNT(*) FROM track_matches m JOIN midi_tracks t ON t.id = m.track_id
         JOIN midi_files f ON f.id = t.midi_file_id
         WHERE f.cue_id = c.id AND m.audio_file_id IS NOT NULL AND m.stem_rank = 0) AS matched_tracks,
       (SELECT MAX(f.length_s) FROM midi_files f WHERE f.cue_id = c.id) AS midi_length_s,
       (SELECT MAX(a.duration_s) FROM audio_files a WHERE a.cue_id = c.id) AS audio_length_s,
       c.error_count AS errors
FROM cues c
WHERE c.status = 'complete'
;
CREATE TABLE midi_notes (
	id INTEGER NOT NULL, 
	track_id INTEGER NOT NULL, 
	channel SMALLINT NOT NULL, 
	pitch SMALLINT NOT NULL, 
	velocity SMALLINT NOT NULL, 
	release_velocity SMALLINT, 
	start_tick BIGINT NOT NULL, 
	end_tick BIGINT NOT NULL GENERATED ALWAYS AS (start_tick + duration_ticks) VIRTUAL, 
	start_us BIGINT NOT NULL, 
	end_us BIGINT NOT NULL GENERATED ALWAYS AS (start_us + duration_us) VIRTUAL, 
	end_sustain_us BIGINT, 
	start_bar INTEGER, 
	start_beat FLOAT, 
	end_inferred BOOLEAN NOT NULL, 
	duration_ticks BIGINT NOT NULL, 
	duration_us BIGINT NOT NULL, 
	CONSTRAINT pk_midi_notes PRIMARY KEY (track_id, id), 
	CONSTRAINT fk_midi_notes_track_id_midi_tracks FOREIGN KEY(track_id) REFERENCES midi_tracks (id) ON DELETE CASCADE
)
 WITHOUT ROWID


;
CREATE VIEW notes_view AS
SELECT n.id AS note_id, c.id AS cue_id, c.name AS cue_name, c.rel_path AS cue_path,
       f.id AS midi_file_id, f.file_name AS midi_file_name,
       t.id AS track_id, t.track_index, t.name AS track_name, t.category AS track_category,
       t.part_index, t.part_name, t.program AS part_program, t.is_drum,
       a.id AS stem_id, a.name AS stem_name, m.verified AS match_verified,
       n.channel, n.pitch, n.velocity, n.release_velocity, n.start_tick, n.end_tick,
       (n.start_us) / CAST(1000000 AS DOUBLE PRECISION) AS start_s, (n.end_us) / CAST(1000000 AS DOUBLE PRECISION) AS end_s,
       (n.end_us - n.start_us) / CAST(1000000 AS DOUBLE PRECISION) AS duration_s,
       (COALESCE(n.end_sustain_us, n.end_us)) / CAST(1000000 AS DOUBLE PRECISION) AS end_sustain_s,
       n.start_bar, n.start_beat, n.end_inferred
FROM midi_tracks t
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
LEFT JOIN track_matches m ON m.track_id = t.id AND m.stem_rank = 0
LEFT JOIN audio_files a ON a.id = m.audio_file_id
CROSS JOIN midi_notes n
WHERE n.track_id = t.id AND c.status = 'complete'
;
