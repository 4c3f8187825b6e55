"""Helpers the test folders share (plain functions and constants; the fixtures stay in the conftest.py files)."""
