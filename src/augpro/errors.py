"""Errors the user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a missing file or an inconsistent setting: reported without a traceback."""

    exit_code = 2
