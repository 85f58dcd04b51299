"""Exceptions a user can meet, each meant to be read as one clear line."""

from __future__ import annotations


class EvalsinkError(Exception):
    """Base class: every error evalsink raises on purpose derives from it."""


class SinkNotInstalledError(EvalsinkError):
    """A sink was asked for by name but no installed distribution provides it."""


class DuplicateSinkError(EvalsinkError):
    """Two installed distributions claim the same sink name; picking one silently would be a guess."""


class SinkLoadError(EvalsinkError):
    """An enabled sink's entry point could not be imported or is not a usable sink class."""


class SinkConfigError(EvalsinkError):
    """A sink's configuration is invalid (unknown keys, wrong types, missing credentials)."""


class SinkFailedError(EvalsinkError):
    """A sink configured ``required=True`` failed; raised after every other sink has had its turn."""


class EncodeError(EvalsinkError, TypeError):
    """A value cannot be written as strict JSON; the message names the field that holds it."""


class SpoolWriteError(EvalsinkError, OSError):
    """Logged samples could not be written to the spool (a full disk): they are kept in memory and
    written by the next flush, so the ``log()`` that raised this must not be repeated."""
