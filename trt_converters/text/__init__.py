"""Converter-side text helpers: GECToR checkpoint formats and the bundled MiniLM."""
