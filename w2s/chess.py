"""Chess helpers shared by the chess tasks: prompt formats, move metrics and the Stockfish engine.

Prompts are PGN-like move lists ending where the side to move writes its move (the paper's format,
"1. e4 e5 2. Nf3"): a game from the start position is a bare move list; a game that starts from a set
position carries a PGN `[FEN "..."]` header first. Targets are SAN moves; a completion is `" " + target`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import chess
import chess.engine

INPUT_FORMATS = ("moves", "fen")
_HEADER = re.compile(r'^\s*\[FEN\s+"([^"]+)"\]\s*')
_MOVE_NUMBER = re.compile(r"^\d+\.+$|^\d+\.+(?=\S)")
_RESULTS = {"1-0", "0-1", "1/2-1/2", "*"}
ENGINE_PLACES = ("/usr/games/stockfish", "/usr/local/bin/stockfish", "/usr/bin/stockfish")


class EngineNotFound(FileNotFoundError):
    """No Stockfish binary where we looked."""


# ----------------------------------------------------------------------------------------------- prompts
def check_format(input_format: str) -> None:
    """Fail early on an unknown prompt format, naming the choices."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"chess input_format {input_format!r} unknown; choices: {list(INPUT_FORMATS)}")


def _next_move_number(board: chess.Board) -> str:
    return f"{board.fullmove_number}." if board.turn == chess.WHITE else f"{board.fullmove_number}..."


def board_prompt(board: chess.Board, input_format: str = "moves") -> str:
    """Render a position as the prompt: its move list (`moves`) or only its FEN header (`fen`).

    `moves` replays `board.move_stack` from its root; the text ends after the last move, plus the next move
    number when White is to move ("... 12. Nf3 Nc6 13."), so the model continues with one SAN move.
    `fen` drops the history: `[FEN "<position>"]` then the move number of the side to move ("13." or "12...").
    """
    check_format(input_format)
    if input_format == "fen" or not board.move_stack:
        return f'[FEN "{board.fen()}"]\n\n{_next_move_number(board)}'
    root = board.root()
    header = "" if root.fen() == chess.STARTING_FEN else f'[FEN "{root.fen()}"]\n\n'
    text = root.variation_san(board.move_stack)
    if board.turn == chess.WHITE:
        text += f" {board.fullmove_number}."
    return header + text


def board_from_prompt(prompt: str) -> chess.Board:
    """Replay a prompt (optional `[FEN]` header, numbered SAN moves) into a board; raises ValueError."""
    m = _HEADER.match(prompt)
    board = chess.Board(m.group(1)) if m else chess.Board()
    body = prompt[m.end() :] if m else prompt
    for tok in body.split():
        tok = _MOVE_NUMBER.sub("", tok)
        if not tok or tok in _RESULTS:
            continue
        board.push_san(tok)
    return board


def board_from_text(prompt_or_fen: str) -> chess.Board:
    """A position from either a bare FEN or a prompt (move list, with or without a FEN header)."""
    text = prompt_or_fen.strip()
    if not _HEADER.match(text) and text.count("/") == 7:
        try:
            return chess.Board(text)
        except ValueError:
            pass
    return board_from_prompt(text)


# ----------------------------------------------------------------------------------------------- metrics
def parse_move(board: chess.Board, text: str) -> chess.Move | None:
    """The legal move a generation names, or None. Reads its first token; tolerates a leading move number
    ("13." / "12..."), check/mate marks and annotations ("Qxf7+", "Qxf7#", "Qxf7!?") and UCI ("h5f7")."""
    toks = text.strip().split()
    while toks and _MOVE_NUMBER.fullmatch(toks[0]):
        toks = toks[1:]
    if not toks:
        return None
    tok = _MOVE_NUMBER.sub("", toks[0]).rstrip("!?+#")
    try:
        return board.parse_san(tok)
    except ValueError:
        return None


def move_metrics(
    prompts_or_fens: Sequence[str], predictions: Sequence[str], targets: Sequence[str]
) -> dict[str, float]:
    """Exact match of the first predicted move (`acc`) and the rate of legal predictions (`legal`).

    Moves are compared as moves, not strings, so "Qxf7" equals "Qxf7#"; an illegal or unparseable
    prediction is wrong. Each position comes from a bare FEN or a prompt.
    """
    if not (len(prompts_or_fens) == len(predictions) == len(targets)):
        raise ValueError(
            f"move_metrics: lengths differ: {len(prompts_or_fens)} positions, "
            f"{len(predictions)} predictions, {len(targets)} targets"
        )
    if not targets:
        return {"acc": float("nan"), "legal": float("nan")}
    hits = legal = 0
    for pos, pred, tgt in zip(prompts_or_fens, predictions, targets, strict=True):
        board = board_from_text(pos)
        want = parse_move(board, tgt)
        if want is None:
            raise ValueError(f"target {tgt!r} is not a legal move in {board.fen()!r}")
        got = parse_move(board, pred)
        legal += got is not None
        hits += got == want
    return {"acc": hits / len(targets), "legal": legal / len(targets)}


# ----------------------------------------------------------------------------------------------- engine
def find_engine(path: str | None = None) -> str:
    """Path of the Stockfish binary: `path`, else $STOCKFISH, else PATH, else Debian's /usr/games."""
    hint = "install it with `apt-get install stockfish` (Debian puts it in /usr/games/stockfish)"
    if path:
        p = Path(path).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
        raise EngineNotFound(f"chess engine {str(p)!r} does not exist or is not executable; {hint}")
    env = os.environ.get("STOCKFISH")
    places: Iterable[str | None] = (env, shutil.which("stockfish"), *ENGINE_PLACES)
    for cand in places:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    raise EngineNotFound(f"Stockfish not found ($STOCKFISH, PATH, {', '.join(ENGINE_PLACES)}); {hint}")


def open_engine(path: str | None = None, threads: int = 1, hash_mb: int = 16) -> chess.engine.SimpleEngine:
    """Start Stockfish single-threaded so that a fixed-depth search is reproducible."""
    engine = chess.engine.SimpleEngine.popen_uci(find_engine(path))
    engine.configure({"Threads": threads, "Hash": hash_mb})
    return engine


def score_cp(info: chess.engine.InfoDict, turn: chess.Color, mate_cp: int = 10_000) -> int:
    """The engine's score from the mover's side in centipawns; mate in n counts as mate_cp - n."""
    return int(info["score"].pov(turn).score(mate_score=mate_cp))


def same_move(position: str, a: str, b: str) -> bool:
    """Whether two answers name the same move in a position (as moves: "Qxf7" = "Qxf7#"); two
    illegal answers count as the same only when their text is."""
    board = board_from_text(position)
    ma, mb = parse_move(board, a), parse_move(board, b)
    return ma == mb if (ma is not None or mb is not None) else a.strip() == b.strip()


def random_wrong_move(position: str, target: str, pool: Sequence[str], rng: Any) -> str:
    """A random legal move other than `target` (SAN), for the random-noise control on chess; the target itself
    when it is the only legal move. `pool` (other rows' answers) is not needed: legality decides."""
    board = board_from_text(position)
    want = parse_move(board, target)
    moves = sorted(board.san(m) for m in board.legal_moves if m != want)
    return rng.choice(moves) if moves else target
