"""Subcommands of the CLI (``kmidi-ingest NAME ...``), one module each with ``main(argv) -> int``.

Register a new one in :data:`kmidi_ingest.cli.SUBCOMMANDS`.
"""
