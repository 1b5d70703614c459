"""Thin click commands over the walknoise library."""
