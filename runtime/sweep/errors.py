"""Errors the user can act on; the command line prints the message and exits 1, never a traceback."""


from ftc.plan import UserError


class SweepError(UserError):
    """A sweep that cannot run as asked (no sweep block, a folder that holds no study, an objective never logged)."""
