"""The base of every error a user can act on."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, settings, a model or a server that cannot be used: the message says which.

    The CLI prints it on one line and exits with code 2, without a traceback. Each module keeps
    its own subclass; the CLI needs only this base, so a command imports no module it does not use.
    """
