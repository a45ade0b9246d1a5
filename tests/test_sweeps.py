"""Every sweep config composes, names only existing configs, and expands to the grid size it promises."""

from __future__ import annotations

import math

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from w2s.config import CONF_DIR, choices

GRIDS = {
    "nlp_grid": 528,
    "chess_grid": 6,
    "offline_nlp": 12,
    "offline_chess": 6,
    "tiny": 8,
    "offline_suite": 240,
}
GROUPS = {"task": "task", "supervisor": "model", "student": "model", "loss": "loss"}


def _grid(name: str) -> tuple[dict, list[list]]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"+sweep={name}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return cfg, [list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()] for o in parsed]


def test_every_sweep_config_is_listed():
    assert set(choices("sweep")) == set(GRIDS)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_sweep_expands_to_its_grid(name):
    cfg, values = _grid(name)
    assert math.prod(len(v) for v in values) == GRIDS[name]
    for key, vals in zip(cfg.hydra.sweeper.params, values, strict=True):
        if key in GROUPS:
            unknown = set(map(str, vals)) - set(choices(GROUPS[key]))
            assert not unknown, f"{name}: {key} has unknown options {unknown}"


def test_cluster_grids_use_slurm_with_the_trainer_layout():
    for name in ("nlp_grid", "chess_grid"):
        cfg, _ = _grid(name)
        launcher = cfg.hydra.launcher
        assert launcher._target_.endswith("SlurmLauncher")
        assert launcher.tasks_per_node == cfg.trainer.devices == launcher.gpus_per_node
        assert launcher.nodes == cfg.trainer.num_nodes


def test_nlp_grid_students_outgrow_supervisors():
    from w2s.config import model_config

    _, values = _grid("nlp_grid")
    params = dict(zip(["task", "supervisor", "student", "loss", "seed"], values, strict=True))
    biggest_sup = max(model_config(s).params for s in params["supervisor"])
    assert all(model_config(s).params > biggest_sup for s in params["student"])
