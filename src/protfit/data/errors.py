"""The one error type for problems in a user's data files."""

from __future__ import annotations


class DataError(ValueError):
    """A problem in the user's data, located as precisely as we can.

    ``str(error)`` reads ``"train.csv, row 12, field 'aa_seq': unknown residue 'J' at position 5; ..."``.
    ``row`` is the 1-based *data* row: the header line of a CSV/TSV file is not counted, so row 1 is the
    first record (in FASTA files, the first ``>`` record; in JSON/parquet/hub splits, the first record).
    ``file``, ``row`` and ``field`` are kept as attributes so callers (CLI, web UI) can point at them.
    """

    def __init__(
        self, message: str, *, file: str | None = None, row: int | None = None, field: str | None = None
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def __reduce__(self):  # keyword-only arguments need help to survive pickling (DataLoader workers)
        return (_rebuild, (self.message, self.file, self.row, self.field))


def _rebuild(message: str, file: str | None, row: int | None, field: str | None) -> DataError:
    return DataError(message, file=file, row=row, field=field)
