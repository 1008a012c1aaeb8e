"""Read corpora into Documents: text lines, JSONL, CSV/TSV, folders of files, standard input.

Readers yield documents lazily. A record that cannot be used becomes a ``Rejected`` item naming
``file:line``; ``read_all`` raises it as an ``InputError`` unless told to skip. A file that cannot be
read at all raises at once. Files ending in ``.gz`` are decompressed on the fly.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import InputError

FORMATS = ("txt", "jsonl", "csv", "tsv")
FOLDER_SUFFIXES = (".txt", ".md")
AUTO_ID_FIELDS = ("id", "_id")  # used as the key when --id-field is not given
MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass
class Document:
    """One document as read: its key is unique in a store and stable across re-ingests."""

    key: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Rejected:
    """A record that could not be used, with where it is and why."""

    source: str
    message: str


Item = Document | Rejected


@dataclass(frozen=True)
class ReadOptions:
    """How records map to documents."""

    text_fields: tuple[str, ...] = ("text",)
    id_field: str | None = None
    format: str | None = None


def detect_format(path: Path, forced: str | None) -> str:
    if forced:
        if forced not in FORMATS:
            raise InputError(f"unknown --format {forced!r}; use one of {', '.join(FORMATS)}")
        return forced
    name = path.name.lower().removesuffix(".gz")
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in ("txt", "md", "text"):
        return "txt"
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return suffix
    raise InputError(
        f"{path}: cannot tell the format from the name; pass --format with one of {', '.join(FORMATS)}"
    )


def _open_binary(path: Path) -> BinaryIO:
    try:
        if path.name.endswith(".gz"):
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror}); check the path") from None


def _lines(stream: BinaryIO, where: str) -> Iterator[tuple[int, str | Rejected]]:
    """Yield (line number, decoded line without its newline, or why it cannot be decoded)."""
    lineno = 0
    try:
        for raw in stream:
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                yield lineno, Rejected(
                    f"{where}:{lineno}",
                    f"line is {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte limit; split the record",
                )
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, Rejected(
                    f"{where}:{lineno}",
                    f"not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8 "
                    "(for example: iconv -f latin1 -t utf-8)",
                )
                continue
            yield lineno, line.rstrip("\r\n")
    except gzip.BadGzipFile:
        raise InputError(f"{where}: ends in .gz but is not gzip data; rename it without .gz, or compress it with gzip") from None
    except EOFError:
        raise InputError(f"{where}:{lineno + 1}: the gzip data ends early (a truncated download?); get the whole file again") from None
    except OSError as exc:
        raise InputError(f"{where}:{lineno + 1}: cannot read ({exc})") from None


def _field(record: dict[str, Any], name: str) -> Any:
    """Look up ``name`` in a record; dots reach into nested objects (``question.stem``)."""
    if name in record:
        return record[name]
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(name)
        value = value[part]
    return value


def _clean_text(text: str, where: str) -> str:
    if "\x00" in text:
        raise InputError(f"{where}: text contains a NUL byte; remove it from the input")
    return text


def record_to_document(
    record: dict[str, Any], where: str, default_key: str, opts: ReadOptions
) -> Document:
    parts = []
    for name in opts.text_fields:
        try:
            value = _field(record, name)
        except KeyError:
            raise InputError(
                f"{where}: no field {name!r}; fields are {', '.join(map(str, record)) or 'none'} "
                "(choose with --text-field)"
            ) from None
        if value is None:
            value = ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InputError(
                f"{where}: field {name!r} is {type(value).__name__}, not text; "
                "point --text-field at a text field"
            )
        parts.append(str(value))
    text = _clean_text(" ".join(p for p in parts if p), where)
    if not text.strip():
        raise InputError(f"{where}: the text is empty; drop the record or fill in {opts.text_fields[0]!r}")
    key = default_key
    id_field = opts.id_field or next((n for n in AUTO_ID_FIELDS if n in record), None)
    if id_field:
        try:
            raw_key = _field(record, id_field)
        except KeyError:
            raise InputError(
                f"{where}: no id field {id_field!r}; fields are {', '.join(map(str, record))} "
                "(choose with --id-field)"
            ) from None
        if not isinstance(raw_key, (str, int)) or isinstance(raw_key, bool) or raw_key == "":
            raise InputError(
                f"{where}: id field {id_field!r} must be a non-empty string or number, "
                f"not {raw_key!r}"
            )
        key = str(raw_key)
    top_text = {n.split(".")[0] for n in opts.text_fields}
    meta = {k: v for k, v in record.items() if k not in top_text and k != id_field}
    return Document(key=key, text=text, meta=meta, source=where)


def _rejecting(where: str, make: Callable[..., Document], *args: Any) -> Item:
    """Run ``make(*args)``; an InputError it raises becomes a Rejected item."""
    try:
        return make(*args)
    except InputError as exc:
        prefix = where + ": "
        message = str(exc)
        return Rejected(where, message[len(prefix) :] if message.startswith(prefix) else message)


def _text_document(where: str, text: str, key: str | None = None, meta: dict[str, Any] | None = None) -> Document:
    return Document(key=key or where, text=_clean_text(text, where), meta=meta or {}, source=where)


def _read_txt(stream: BinaryIO, label: str, key: str) -> Iterator[Item]:
    for lineno, line in _lines(stream, label):
        if isinstance(line, Rejected):
            yield line
        elif line.strip():
            where = f"{label}:{lineno}"
            yield _rejecting(where, _text_document, where, line, f"{key}:{lineno}")


def _parse_json_record(line: str, where: str, key: str, opts: ReadOptions) -> Document:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InputError(f"{where}: not valid JSON ({detail}); fix or remove the line") from None
    if not isinstance(record, dict):
        raise InputError(
            f"{where}: expected a JSON object, got {type(record).__name__}; "
            "each line must be an object such as {\"text\": \"...\"}"
        )
    return record_to_document(record, where, key, opts)


def _read_jsonl(stream: BinaryIO, label: str, key: str, opts: ReadOptions) -> Iterator[Item]:
    for lineno, line in _lines(stream, label):
        if isinstance(line, Rejected):
            yield line
        elif line.strip():
            where = f"{label}:{lineno}"
            yield _rejecting(where, _parse_json_record, line, where, f"{key}:{lineno}", opts)


def _read_delimited(stream: BinaryIO, label: str, key: str, opts: ReadOptions, delimiter: str) -> Iterator[Item]:
    numbered = _lines(stream, label)
    current = [0]
    pending: list[Rejected] = []

    def text_lines() -> Iterator[str]:
        for lineno, line in numbered:
            current[0] = lineno
            if isinstance(line, Rejected):
                pending.append(line)
                continue
            yield line + "\n"  # the line end back, so that a quoted field keeps its newlines

    reader = csv.reader(text_lines(), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        yield from pending  # a file whose only line cannot be decoded says so
        return
    except csv.Error as exc:
        raise InputError(f"{label}:1: cannot parse the header ({exc})") from None
    if pending:
        raise InputError(f"{pending[0].source}: {pending[0].message}")
    if len(set(header)) != len(header):
        raise InputError(f"{label}:1: the header repeats a column name; make the names unique")
    missing = [name for name in opts.text_fields if name.split(".")[0] not in header]
    if missing:
        shown = ", ".join(repr(h[:40]) for h in header[:8])
        raise InputError(
            f"{label}:1: the header has no column {missing[0]!r} (columns: {shown}); "
            "name the text column with --text-field, or check that this is a CSV/TSV file"
        )
    ended = current[0]
    while True:
        try:
            row: list[str] | None = next(reader)
        except StopIteration:
            yield from pending
            return
        except csv.Error as exc:
            row = None
            pending.append(Rejected(f"{label}:{current[0]}", f"cannot parse ({exc})"))
        yield from pending
        pending.clear()
        start, ended = ended + 1, current[0]  # a quoted field can span lines: name the first
        if row is None:
            continue
        where = f"{label}:{start}"
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield Rejected(
                where,
                f"{len(row)} fields where the header has {len(header)}; quote fields that contain the delimiter",
            )
            continue
        yield _rejecting(where, record_to_document, dict(zip(header, row, strict=True)), where, f"{key}:{start}", opts)


def _read_stream(stream: BinaryIO, label: str, fmt: str, opts: ReadOptions, key: str | None = None) -> Iterator[Item]:
    """Documents from an open stream: ``label`` names it in messages and sources, ``key`` (default
    ``label``) starts the keys of records without an id (``key:line``)."""
    key = key or label
    if fmt == "txt":
        return _read_txt(stream, label, key)
    if fmt == "jsonl":
        return _read_jsonl(stream, label, key, opts)
    return _read_delimited(stream, label, key, opts, "," if fmt == "csv" else "\t")


def file_key(path: Path) -> str:
    """What a file's documents are keyed by, however its path was typed: its path relative to the
    current directory when it lies below it, else its absolute path (links resolved)."""
    real = path.resolve()
    try:
        return real.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return real.as_posix()


def front_matter(text: str) -> tuple[str, dict[str, Any]]:
    """Markdown front matter (``---`` YAML ``---`` at the very top) split off as metadata; text
    without it, or whose front matter is not a YAML mapping, comes back unchanged."""
    if not text.startswith(("---\n", "---\r\n")):
        return text, {}
    lines = text.splitlines(keepends=True)
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        return text, {}
    import yaml  # only Markdown files with front matter need it

    try:
        meta = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError:
        return text, {}
    if not isinstance(meta, dict):
        return text, {}
    # dates and the like become text, so that the metadata is JSON
    return "".join(lines[end + 1 :]).lstrip("\r\n"), json.loads(json.dumps(meta, default=str))


def _read_folder(folder: Path) -> Iterator[Item]:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(FOLDER_SUFFIXES)
    )
    for path in files:
        label = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{label}: cannot read ({exc.strerror})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            yield Rejected(f"{label}:{line}", "not valid UTF-8; re-encode the file as UTF-8")
            continue
        meta: dict[str, Any] = {}
        if path.suffix.lower() == ".md":
            text, meta = front_matter(text)
        if text.strip():
            yield _rejecting(label, _text_document, label, text, file_key(path), meta)


def read_path(path: str, opts: ReadOptions, stdin: BinaryIO | None = None) -> Iterator[Item]:
    """Documents from one path: a file, a folder, or ``-`` for standard input."""
    if path == "-":
        fmt = opts.format or "txt"
        if fmt not in FORMATS:
            raise InputError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
        for item in _read_stream(stdin or _stdin(), "<stdin>", fmt, opts):
            if isinstance(item, Document) and item.key == item.source:
                # no id given: the line number would make every stdin ingest replace the last one
                item.key = f"<stdin>:{item.content_hash[:16]}"
            yield item
        return
    p = Path(os.path.normpath(path))
    if p.is_dir():
        yield from _read_folder(p)
        return
    if not p.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    fmt = detect_format(p, opts.format)
    read = rejected = 0
    first: Rejected | None = None
    with _open_binary(p) as stream:
        for item in _read_stream(stream, str(p), fmt, opts, file_key(p)):
            if isinstance(item, Rejected):
                rejected += 1
                first = first or item
            else:
                read += 1
            if rejected > 20 and not read and first is not None:
                break
            yield item
    if rejected and not read and first is not None:
        raise InputError(
            f"{p}: none of its records could be read (the first, {first.source}: {first.message}); "
            f"is it a {fmt} file? Fix it or pass --format"
        )


def _stdin() -> BinaryIO:
    import sys

    return sys.stdin.buffer


def read_all(
    paths: Iterable[str], opts: ReadOptions, stdin: BinaryIO | None = None, skip: bool = False
) -> Iterator[Item]:
    """Every document under ``paths``; a rejected record raises, or is passed on when ``skip``."""
    for path in paths:
        for item in read_path(path, opts, stdin):
            if isinstance(item, Rejected) and not skip:
                raise InputError(f"{item.source}: {item.message}")
            yield item


def read_records(
    records: Iterable[Document | Mapping[str, Any]], opts: ReadOptions, skip: bool = False
) -> Iterator[Item]:
    """Documents from records in memory: ``Document`` objects as they are, dicts mapped like JSONL
    lines (keyed ``<record N>`` when they hold no id); a bad record raises, or is passed on when ``skip``."""
    for n, record in enumerate(records, 1):
        where = record.source if isinstance(record, Document) and record.source else f"<record {n}>"
        if isinstance(record, Document):
            item = _rejecting(where, _checked_document, record, where)
        else:
            item = _rejecting(where, record_to_document, dict(record), where, where, opts)
        if isinstance(item, Rejected) and not skip:
            raise InputError(f"{item.source}: {item.message}")
        yield item


def _checked_document(doc: Document, where: str) -> Document:
    """A ``Document`` given as it is, held to the rules that records read from files meet."""
    if not doc.key:
        raise InputError(f"{where}: the document has an empty key; give every document a key")
    _clean_text(doc.text, where)
    if not doc.text.strip():
        raise InputError(f"{where}: the text is empty; drop the document or give it text")
    return doc if doc.source else Document(doc.key, doc.text, doc.meta, where)


def spool_stdin(stdin: BinaryIO | None = None) -> io.BufferedRandom:
    """Copy standard input to a temporary file so it can be read twice (validate, then ingest)."""
    import shutil
    import tempfile

    spool = tempfile.TemporaryFile()
    shutil.copyfileobj(stdin or _stdin(), spool)
    spool.seek(0)
    return spool
