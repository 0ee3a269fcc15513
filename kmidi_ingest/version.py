"""The package version, in a module of its own so that code can read it without importing the
package's face (``kmidi_ingest/__init__.py``)."""

__version__ = "0.1.0"
