"""Supernets, their elastic ops, and search spaces as data.

Import submodules directly (``search_spaces.space``, ``search_spaces.registry``); this package
keeps torch out of its own import so pure-data users stay light."""

from search_spaces.arch import ArchConfig, ArchError
from search_spaces.space import SearchSpace, StageChoices
from search_spaces.spaces import get_space, list_spaces

__all__ = ["ArchConfig", "ArchError", "SearchSpace", "StageChoices", "get_space", "list_spaces"]
