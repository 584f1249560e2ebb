"""Progress of an update run: a rich progress bar on a terminal, nothing otherwise (the server runs the update
in a subprocess and only wants the report)."""

from __future__ import annotations

from typing import Protocol, TextIO


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def done(self, feed: str, status: str) -> None: ...
    def close(self) -> None: ...


class SilentProgress:
    def start(self, total: int) -> None:
        pass

    def done(self, feed: str, status: str) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress:
    """One bar over the feeds of the run, on ``stream`` (stderr), removed when the run ends."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self._task = self._bar.add_task("fetching feeds", total=0)

    def start(self, total: int) -> None:
        self._bar.update(self._task, total=total)
        self._bar.start()

    def done(self, feed: str, status: str) -> None:
        self._bar.update(self._task, advance=1, description=f"{feed}: {status}")

    def close(self) -> None:
        self._bar.stop()


def progress_for(stream: TextIO) -> Progress:
    """A bar when ``stream`` is a terminal, silence otherwise."""
    isatty = getattr(stream, "isatty", None)
    return BarProgress(stream) if isatty is not None and isatty() else SilentProgress()
