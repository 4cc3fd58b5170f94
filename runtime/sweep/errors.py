"""Errors the user can act on; the command line prints the message and exits 1, never a traceback."""


class SweepError(Exception):
    pass
