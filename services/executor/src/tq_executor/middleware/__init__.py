"""Dramatiq middleware for the executor, one behaviour per module."""
