from sqlalchemy import inspect

from kmidi_ingest import migrate
from kmidi_ingest.db import make_engine

REQUIRED = {
    "midi_files",
    "midi_tracks",
    "midi_notes",
    "midi_cc",
    "midi_program_changes",
    "audio_files",
    "audio_features",
    "final_mixes",
    "cues",
    "ingest_runs",
    "ingest_errors",
    "tempo_changes",
    "time_signatures",
    "audio_channels",
}


def test_upgrade_creates_schema_and_models_match_migrations(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert names >= REQUIRED
    assert {"notes_view", "cue_summary"} <= set(inspect(engine).get_view_names())
    migrate.check(engine)  # raises on drift between models and migrations
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= REQUIRED
    engine.dispose()
