"""Pytest fixtures starting a local Constant Contact sandbox (placeholder while it is built)."""
