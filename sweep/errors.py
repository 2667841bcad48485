"""The one base of every error the project raises on purpose: ``SweepError``.

Why one base: a command (``sweep select``, ``sweep progress`` ...) turns any ``SweepError`` into one line and exit
2, since it names what to fix (a field, a path, a study) and a traceback would only bury that line; anything else
is a bug and keeps its traceback. Each project error also derives from the builtin it refines (``ValueError``
for bad input, ``PermissionError`` for an unsafe folder, ``RuntimeError`` for a sweep that cannot go on), so
code that catches the builtin keeps working.

This module imports nothing of the project: every layer may raise from it.
"""
from __future__ import annotations


class SweepError(Exception):
    """An error with a message that tells the user what is wrong and what to do; never a bug of ours."""
