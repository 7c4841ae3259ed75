"""The tables of the client's lists: short values whole, free text wrapped between words,
whatever the width (80 columns, or a pipe)."""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.measure import Measurement
from rich.table import Table


@dataclass(frozen=True)
class Column:
    """A column of a list. Short values (names, states, numbers, ids, times) never wrap: a
    word cut in two ("activ/e") reads as two words. Free text (``wide``) wraps between words
    and takes whatever width the short columns leave."""

    header: str
    wide: bool = False
    justify: JustifyMethod = "left"


MIN_FOLDED = 12  # the narrowest a column folding a long word (a URL) is made


class _ListTable(Table):
    """A table whose free-text columns give way before any word is cut.

    Rich narrows wrapping columns without regard to their words when a table is too wide
    ("activ/e"). Before each rendering this one sizes its wide columns itself: each at least
    its longest word, the room left shared out by how much text each has; short columns keep
    their natural width. A word longer than all the room there is (a URL) is folded in its
    own column, never a short column's value."""

    wide: frozenset[int] = frozenset()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        self._fit(console, options)
        yield from super().__rich_console__(console, options)

    def _fit(self, console: Console, options: ConsoleOptions) -> None:
        for i in self.wide:
            self.columns[i].width = None
        spans = [self._span(console, options, i) for i in range(len(self.columns))]
        # What the table adds around its cells (Rich's own accounts: padding, separators).
        overhead = self._extra_width + sum(
            self._get_padding_width(i) for i in range(len(self.columns))
        )
        room = (
            options.max_width
            - overhead
            - sum(most for i, (_, most) in enumerate(spans) if i not in self.wide)
        )
        wide = sorted(self.wide)
        least = sum(spans[i][0] for i in wide)
        most = sum(spans[i][1] for i in wide)
        if most <= room:
            return  # it fits as it is
        if least > room:
            # Some word is longer than the room there is (a URL): that column alone folds
            # it, the others keep their words whole; if even that leaves it too little,
            # the wide columns share the room by the length of their longest words.
            longest = max(wide, key=lambda i: spans[i][0])
            rest = least - spans[longest][0]
            for i in wide:
                self.columns[i].width = spans[i][0]
            self.columns[longest].width = room - rest
            if room - rest < MIN_FOLDED:
                for i in wide:
                    self.columns[i].width = max(1, room * spans[i][0] // least)
            return
        spare, slack = room - least, most - least
        for i in wide:
            low, high = spans[i]
            self.columns[i].width = low + (spare * (high - low)) // slack

    def _span(self, console: Console, options: ConsoleOptions, index: int) -> tuple[int, int]:
        """A column's (longest word, longest line), header included."""
        column = self.columns[index]
        cells = [column.header, *column.cells] if self.show_header else list(column.cells)
        sizes = [Measurement.get(console, options, cell) for cell in cells]
        least = max((m.minimum for m in sizes), default=1)
        most = max((m.maximum for m in sizes), default=1)
        return least, most


def list_table(*columns: str | Column, title: str | None = None) -> Table:
    """The tables of lists: a rule under the header, no vertical lines; a plain header is a
    short column (see ``Column``)."""
    table = _ListTable(
        box=box.SIMPLE_HEAD,
        title=title,
        title_justify="left",
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    wide = set()
    for i, c in enumerate(columns):
        col = Column(c) if isinstance(c, str) else c
        if col.wide:
            table.add_column(col.header, overflow="fold", justify=col.justify)
            wide.add(i)
        else:
            table.add_column(col.header, no_wrap=True, justify=col.justify)
    table.wide = frozenset(wide)
    return table
