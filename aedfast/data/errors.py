"""The error every data set reader raises on a tree that does not match its layout."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data set tree that does not match the expected layout: says which file, what was
    expected and what was found."""
