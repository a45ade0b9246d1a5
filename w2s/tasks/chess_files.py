"""A user's own puzzle file (`task.source=file`): a Lichess puzzle CSV export or a PGN of puzzles, either
plain or zstd-compressed, streamed so a multi-million-row export is never loaded whole.

The file's extension picks its reader and its first line must agree with it; each row or game becomes an
`Entry` that the theme and rating filters read before its board is built (most of a row's cost, and most rows
of a full export are filtered out). Rows come out in the generate schema of w2s.tasks.chess (+ `rating`).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import chess
import chess.pgn
import zstandard
from datasets import Dataset

from w2s.chess import board_prompt, check_format
from w2s.errors import ConfigError, FormatError, TaskError
from w2s.tasks.chess import rows_to_dataset

log = logging.getLogger(__name__)

LICHESS_HEADER = (
    "PuzzleId",
    "FEN",
    "Moves",
    "Rating",
    "RatingDeviation",
    "Popularity",
    "NbPlays",
    "Themes",
    "GameUrl",
    "OpeningTags",
)
LICHESS_NEEDED = ("PuzzleId", "FEN", "Moves", "Rating", "Themes")
FILE_KINDS = {".csv": "csv", ".pgn": "pgn"}  # each also compressed as <ext>.zst
PGN_RATING_HEADERS = ("PuzzleRating", "Rating")
SHOW_SKIPPED = 5  # skipped rows named in the warning; the count covers all of them


@dataclass(frozen=True)
class Entry:
    """One row or game of a puzzle file: what the filters read, and the puzzle itself, built only when kept
    (building the board is most of the cost of a row, and most rows of a full export are filtered out)."""

    id: str
    rating: float | None
    themes: frozenset[str]
    puzzle: Callable[
        [], tuple[chess.Board, str] | str
    ]  # (position the solver moves in, target SAN) or why not


def theme_key(name: str) -> str:
    """Themes compared loosely, so `mateIn2` (a Lichess theme) matches `mate in 2` (a PGN Termination)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def file_kind(path: Path) -> str:
    """`csv` or `pgn` from the file name (`.csv`, `.csv.zst`, `.pgn`, `.pgn.zst`); anything else is refused."""
    name = path.name.lower().removesuffix(".zst")
    for ext, kind in FILE_KINDS.items():
        if name.endswith(ext):
            return kind
    choices = [e + z for e in FILE_KINDS for z in ("", ".zst")]
    raise FormatError(f"puzzle file {path.name!r}: unknown extension; choices: {choices}")


class ZstdStream(io.RawIOBase):
    """A `.zst` file decompressed on the fly, frame after frame. zstandard's own stream_reader ends quietly
    on a truncated file (a cut-off download); here that is an error, not silently fewer puzzles."""

    def __init__(self, path: Path) -> None:
        self.raw = path.open("rb")
        self.dec = zstandard.ZstdDecompressor().decompressobj()
        self.left = memoryview(b"")  # decompressed bytes not yet handed out (a view: slicing copies nothing)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self.left:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                if not self.dec.eof:
                    raise zstandard.ZstdError("the file ends inside a zstd frame (truncated?)")
                return 0
            out = self.dec.decompress(chunk)
            while self.dec.eof and self.dec.unused_data:  # the next frame starts in this chunk
                rest = self.dec.unused_data
                self.dec = zstandard.ZstdDecompressor().decompressobj()
                out += self.dec.decompress(rest)
            self.left = memoryview(out)
        n = min(len(buf), len(self.left))
        buf[:n] = self.left[:n]
        self.left = self.left[n:]
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_text(path: Path) -> TextIO:
    """The file as a text stream, decompressed on the fly for `.zst`: nothing is read whole."""
    if path.name.lower().endswith(".zst"):
        raw = io.BufferedReader(ZstdStream(path))
        return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
    return path.open(encoding="utf-8-sig", errors="replace", newline="")


def first_line(path: Path) -> str:
    """The first non-blank line (to check a file's content against its extension before streaming it)."""
    try:
        with open_text(path) as f:
            for line in f:
                if line.strip():
                    return line.strip()
    except zstandard.ZstdError as e:
        raise FormatError(f"puzzle file {path.name!r} is not a valid zstd stream ({e})") from e
    return ""


def check_content(path: Path, kind: str) -> None:
    """Refuse a file whose content is not what its extension says (a CSV named .pgn), in one line."""
    line = first_line(path)
    if not line:
        raise TaskError(f"puzzle file {path.name!r} is empty")
    looks = "pgn" if line.startswith("[") else "csv" if "," in line else "neither CSV nor PGN"
    if looks != kind:
        raise FormatError(
            f"puzzle file {path.name!r} is named .{kind} but looks like {looks} (starts {line[:50]!r}); "
            "a Lichess puzzle CSV is .csv/.csv.zst, a PGN of puzzles .pgn"
        )


def lichess_puzzle(fen: str, moves: str) -> tuple[chess.Board, str] | str:
    """A Lichess row's puzzle: the set-up move Moves[0] played on FEN, target Moves[1] in SAN; or why not."""
    try:
        board = chess.Board(fen)
    except ValueError:
        return f"bad FEN {fen!r}"
    if not board.is_valid():
        return f"invalid position {fen!r}"
    ucis = moves.split()
    if len(ucis) < 2:
        return f"Moves {moves!r} lacks a set-up move and a solution move"
    try:
        board.push(board.parse_uci(ucis[0]))
    except ValueError:
        return f"illegal move {ucis[0]}"
    try:
        return board, board.san(board.parse_uci(ucis[1]))
    except ValueError:
        return f"illegal move {ucis[1]}"


def csv_puzzles(stream: TextIO, name: str) -> Iterator[tuple[str, Entry | str]]:
    """(`line N`, entry or why not) per row of a Lichess puzzle export; the header is checked first."""
    reader = csv.reader(stream)
    header = next(reader, [])
    if not set(LICHESS_NEEDED) <= set(header):
        raise FormatError(
            f"puzzle file {name!r}: header {','.join(header)[:60]!r} is not the Lichess puzzle header "
            f"{','.join(LICHESS_HEADER)}"
        )
    col = [header.index(c) for c in LICHESS_NEEDED]
    stem = Path(name).stem.split(".")[0]
    for fields in reader:
        if not fields:
            continue
        where = f"line {reader.line_num}"
        if len(fields) != len(header):
            yield where, f"{len(fields)} fields, expected {len(header)}"
            continue
        pid, fen, moves, rating, themes = (fields[i] for i in col)
        try:
            value = float(rating)
        except ValueError:
            yield where, f"bad Rating {rating!r}"
            continue
        tags = frozenset(theme_key(t) for t in themes.split())
        yield where, Entry(f"{stem}-{pid}", value, tags, partial(lichess_puzzle, fen, moves))


class QuietGameBuilder(chess.pgn.GameBuilder):
    """Keep PGN parse errors on the game (they are reported in one summary line) instead of logging each."""

    def handle_error(self, error: Exception) -> None:
        self.game.errors.append(error)


def pgn_puzzle(game: chess.pgn.Game) -> tuple[chess.Board, str] | str:
    """A PGN game's puzzle: the position of its FEN header, target its first mainline move; or why not."""
    if "FEN" not in game.headers:
        return "no [FEN] header"
    if game.errors:
        return str(game.errors[0])[:80]
    board = game.board()
    if not board.is_valid():
        return f"invalid position {game.headers['FEN']!r}"
    first = game.next()
    return "no solution move" if first is None else (board, board.san(first.move))


def pgn_puzzles(stream: TextIO, name: str) -> Iterator[tuple[str, Entry | str]]:
    """(`game N`, entry or why not) per game, read one game at a time; themes from the Termination header."""
    stem = Path(name).stem.split(".")[0]
    n = 0
    while (game := chess.pgn.read_game(stream, Visitor=QuietGameBuilder)) is not None:
        n += 1
        text = next((game.headers[h] for h in PGN_RATING_HEADERS if h in game.headers), None)
        try:
            rating = None if text is None else float(text)
        except ValueError:
            yield f"game {n}", f"bad rating header {text!r}"
            continue
        term = game.headers.get("Termination")
        tags = frozenset([theme_key(term)] if term else [])
        yield f"game {n}", Entry(f"{stem}-{n}", rating, tags, partial(pgn_puzzle, game))


READERS: dict[str, Callable[[TextIO, str], Iterator[tuple[str, Entry | str]]]] = {
    "csv": csv_puzzles,
    "pgn": pgn_puzzles,
}


@dataclass(frozen=True)
class Filters:
    """Which puzzles a file load keeps: any of `themes` (compared by `theme_key`), a rating in [lo, hi]."""

    themes: frozenset[str]
    lo: float = -math.inf
    hi: float = math.inf

    @property
    def by_rating(self) -> bool:
        return self.lo > -math.inf or self.hi < math.inf

    def keep(self, item: Entry, where: str, name: str) -> bool:
        """Whether `item` passes; a rating bound on a puzzle without a rating cannot apply, which is an error."""
        if self.themes and not self.themes & item.themes:
            return False
        if not self.by_rating:
            return True
        if item.rating is None:
            raise TaskError(
                f"{name} {where} has no rating ({'/'.join(PGN_RATING_HEADERS)} header); "
                "task.min_rating/max_rating cannot apply"
            )
        return self.lo <= item.rating <= self.hi


@dataclass
class Tally:
    """What a file load saw, for its log line and for the error that says why nothing was kept."""

    read: int = 0
    filtered: int = 0
    skipped: list[str] = field(default_factory=list)
    ratings: list[float] = field(default_factory=lambda: [math.inf, -math.inf])  # lowest, highest seen

    def named(self) -> str:
        """The first skipped rows with their reasons (the count covers all of them)."""
        return ", ".join(self.skipped[:SHOW_SKIPPED]) + (", ..." if len(self.skipped) > SHOW_SKIPPED else "")


def puzzle_path(path: str | None, limit: int | None) -> tuple[Path, str]:
    """The file and its kind (`csv` or `pgn`), refused in one line when the settings or the content are wrong."""
    if not path:
        raise ConfigError("task.source=file needs task.path=FILE (.csv, .csv.zst or .pgn)")
    if limit is not None and limit < 1:
        raise ConfigError(f"task.limit={limit}: must be a positive number of puzzles, or null")
    p = Path(path).expanduser()
    kind = file_kind(p)
    if not p.is_file():
        raise TaskError(f"task.path {str(p)!r} does not exist")
    check_content(p, kind)
    return p, kind


def read_puzzles(
    p: Path, kind: str, filters: Filters, input_format: str, limit: int | None, tally: Tally
) -> list[dict[str, Any]]:
    """The kept puzzles as rows, streaming the file until `limit` are kept; `tally` counts the rest."""
    rows: list[dict[str, Any]] = []
    with open_text(p) as stream:
        try:
            for where, item in READERS[kind](stream, p.name):
                tally.read += 1
                if isinstance(item, str):
                    tally.skipped.append(f"{where} ({item})")
                    continue
                if item.rating is not None:
                    tally.ratings = [min(tally.ratings[0], item.rating), max(tally.ratings[1], item.rating)]
                if not filters.keep(item, where, p.name):
                    tally.filtered += 1
                    continue
                made = item.puzzle()
                if isinstance(made, str):
                    tally.skipped.append(f"{where} ({made})")
                    continue
                rows.append(puzzle_row(item, *made, input_format))
                if limit is not None and len(rows) >= limit:
                    break
        except (zstandard.ZstdError, csv.Error) as e:
            unit = "rows" if kind == "csv" else "games"
            raise FormatError(f"puzzle file {p.name!r}: unreadable after {tally.read} {unit} ({e})") from e
    return rows


def nothing_kept(name: str, unit: str, filters: Filters, tally: Tally) -> TaskError:
    """Why a file gave no puzzle: empty, every row unusable, or filters that match none of its ratings."""
    if not tally.read:
        return TaskError(f"puzzle file {name!r} has no puzzles")
    if len(tally.skipped) == tally.read:
        return TaskError(f"no usable puzzle in {name!r}: all {tally.read} {unit} skipped: {tally.named()}")
    low, high = tally.ratings
    span = f"{low:g}-{high:g}" if low <= high else "none"
    return TaskError(
        f"no puzzle in {name!r} passes the filters (themes={sorted(filters.themes)}, rating [{filters.lo}, "
        f"{filters.hi}]): {tally.read} {unit} read, {tally.filtered} filtered out, {len(tally.skipped)} "
        f"skipped; ratings seen {span}"
    )


def load_puzzle_file(
    path: str | None = None,
    input_format: str = "moves",
    themes: list[str] | None = None,
    min_rating: float | None = None,
    max_rating: float | None = None,
    limit: int | None = None,
) -> Dataset:
    """Puzzles from the user's file, streamed: a Lichess puzzle CSV (`.csv`, `.csv.zst`) or a PGN of puzzles.

    Filters (any of `themes`, the rating range) apply while reading and reading stops at `limit` kept rows, so
    a multi-million-row export is never loaded whole. Unusable rows are skipped, counted and named in a
    warning; a file with none usable is an error."""
    check_format(input_format)
    p, kind = puzzle_path(path, limit)
    filters = Filters(
        frozenset(theme_key(t) for t in themes or ()),
        -math.inf if min_rating is None else float(min_rating),
        math.inf if max_rating is None else float(max_rating),
    )
    tally = Tally()
    rows = read_puzzles(p, kind, filters, input_format, limit, tally)
    unit = "rows" if kind == "csv" else "games"
    if tally.skipped and rows:
        log.warning(
            "skipped %d of %d %s of %s: %s", len(tally.skipped), tally.read, unit, p.name, tally.named()
        )
    stop = " (stopped at task.limit)" if limit == len(rows) else ""
    counts = (tally.read, unit, len(rows), tally.filtered, len(tally.skipped), stop)
    log.info("%s: read %d %s, kept %d, filtered out %d, skipped %d%s", p.name, *counts)
    if not rows:
        raise nothing_kept(p.name, unit, filters, tally)
    return rows_to_dataset(rows, p.name)


def puzzle_row(item: Entry, board: chess.Board, target: str, input_format: str) -> dict[str, Any]:
    """A file puzzle in the generate schema (+ `rating`): the prompt renders the position after any set-up move."""
    return {
        "id": item.id,
        "prompt": board_prompt(board, input_format),
        "target": target,
        "difficulty": item.rating,
        "fen": board.fen(),
        "rating": item.rating,
    }
