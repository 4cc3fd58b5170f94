"""Launch errors: problems a user fixes (a missing launcher, a busy port, a rank that failed), reported
as one message with exit code 1, never a traceback."""

from __future__ import annotations


from ftc.plan import UserError


class LaunchError(UserError):
    """Raised before any rank starts (missing binary, busy port, bad node rank)."""
