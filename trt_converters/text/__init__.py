"""Helpers for the text model scripts: checkpoint key fixes, GECToR formats, the bundled MiniLM."""
