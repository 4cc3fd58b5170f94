"""The one exception the data pipeline raises for a user's data or settings.

The CLI prints it as a located message (`path:line: problem`), never as a traceback; the
trainer lets it propagate so a bad data set stops a run before any GPU time is spent.
"""

from __future__ import annotations


from ftc.plan import UserError


class DataError(UserError):
    """A problem with the data or the data settings, located where possible."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 unit: str = "line", help: str | None = None):
        self.message = message
        self.file = file
        self.row = row
        self.unit = unit  # "line" for text-like files, "row" for tables
        self.help = help
        super().__init__(self.located())

    @property
    def location(self) -> str | None:
        if self.file is None:
            return None
        if self.row is None:
            return self.file
        if self.unit == "line":
            return f"{self.file}:{self.row}"
        return f"{self.file} (row {self.row})"

    def located(self) -> str:
        text = self.message if self.location is None else f"{self.location}: {self.message}"
        if self.help:
            text += f"\n  = help: {self.help}"
        return text
