"""Scoring plugins, imported by name: ``importlib.import_module("plugins." + kind)``."""
