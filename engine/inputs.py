"""Input rows, streamed one at a time from jsonl, json or csv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import AidsafeError
from .spec import InputSpec, JoinSpec


class InputError(AidsafeError):
    """A row that cannot be read; carries file:line."""


@dataclass(frozen=True)
class Row:
    index: int          # 0-based position in the input
    id: Any             # the id_field value, or the row number
    row: dict


def read_rows(spec: InputSpec, limit: int | None = None) -> Iterator[Row | InputError]:
    """Rows in file order, never the whole file in memory (except `json`, an array).

    A row that cannot be used is yielded as an InputError (that item fails, the run goes on);
    a file that cannot be read at all raises InputError."""
    limit = limit if limit is not None else spec.limit
    joined = _index(spec.join) if spec.join else None
    for index, (line, row) in enumerate(READERS[spec.format](spec)):
        if limit is not None and index >= limit:
            return
        if joined is not None and isinstance(row, dict):
            row = _joined(spec, line, row, joined)
        yield _row(spec, index, line, row)


def _index(join: JoinSpec) -> dict[str, Any]:
    """The joined file, loaded whole, by its `on` field."""
    spec = InputSpec(join.path, join.display, None, join.format)  # type: ignore[arg-type]
    return {str(row.get(join.on)): row for _, row in READERS[join.format](spec)
            if isinstance(row, dict)}


def _joined(spec: InputSpec, line: int, row: dict, joined: dict[str, Any]) -> Any:
    join = spec.join
    match = joined.get(str(row.get(join.on)))
    if match is None:
        return InputError(f"{spec.display}:{line}: no row of {join.display} has "
                          f"{join.on} = {str(row.get(join.on))[:60]!r}")
    return {**row, join.name: match}


def _row(spec: InputSpec, index: int, line: int, row: Any) -> Row | InputError:
    if isinstance(row, InputError):
        return row
    if not isinstance(row, dict):
        return InputError(f"{spec.display}:{line}: row is {type(row).__name__}, "
                          "expected an object")
    if not spec.id_field:
        return Row(index, index, row)
    if row.get(spec.id_field) in (None, ""):
        return InputError(f"{spec.display}:{line}: row has no {spec.id_field!r}")
    return Row(index, row[spec.id_field], row)


def _jsonl(spec: InputSpec) -> Iterator[tuple[int, Any]]:
    with spec.path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, InputError(f"{spec.display}:{number}:{exc.colno}: "
                                         f"not JSON: {exc.msg}")


def _json(spec: InputSpec) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(spec.path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{spec.display}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}"
                         ) from exc
    if not isinstance(data, list):
        raise InputError(f"{spec.display}: a .json input must be an array of objects")
    yield from ((i + 1, row) for i, row in enumerate(data))


def _trace(spec: InputSpec) -> Iterator[tuple[int, Any]]:
    """Another run's trace.jsonl: each row is the item's id, its input fields and every
    stage's result by stage id (so a recipe can build on an earlier run)."""
    for number, record in _jsonl(spec):
        if isinstance(record, dict) and isinstance(record.get("stages"), dict):
            values = {sid: st.get("value") for sid, st in record["stages"].items()}
            yield number, {"id": record.get("id"), **record.get("input", {}), **values}
        else:
            yield number, record if isinstance(record, InputError) else InputError(
                f"{spec.display}:{number}: not a trace record (no stages)")


def _csv(spec: InputSpec) -> Iterator[tuple[int, Any]]:
    with spec.path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            if None in row:
                yield reader.line_num, InputError(f"{spec.display}:{reader.line_num}: row has "
                                                  "more fields than the header")
            else:
                yield reader.line_num, row


READERS = {"jsonl": _jsonl, "json": _json, "csv": _csv, "trace": _trace}
