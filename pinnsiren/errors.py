"""The one exception family for errors a user can cause outside the problem schema.

The CLI prints ``str(error)`` as one line and exits with status 2.
"""


class UserError(ValueError):
    """Bad input that is the user's to fix (missing file, unstable step, ...)."""
