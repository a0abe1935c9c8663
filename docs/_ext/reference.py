"""Placeholder for the generated reference (the generator replaces this)."""


def setup(app):
    return {"parallel_read_safe": True}
