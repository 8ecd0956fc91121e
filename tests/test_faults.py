"""Issue 14: faults and hostile files. A crafted training checkpoint cannot run code
(defect 7); killed runs and builds leave what was there before, or the whole new thing,
and no temporaries; a rerun gives the same bytes; two builders of one folder take turns."""

import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from pyserini_ext.train.trainer import ConfigError, Trainer, parse_config, rng_state, set_rng_state


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _config(name: str):
    return parse_config({"student": "all-minilm-l6-v2", "loss": {"name": "info_nce"}}, name)


# --- defect 7: checkpoints load with weights_only=True --------------------------------------------

def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    trainer = Trainer(_config("crafted"), tmp_path, quiet=True)
    trainer.state_dir.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    torch.save({"step": 1, "payload": _RunsCodeWhenUnpickled(marker)}, trainer.checkpoint_path)
    with pytest.raises(ConfigError, match="not a checkpoint this trainer wrote"):
        trainer.load_checkpoint()
    assert not marker.exists()


def test_generator_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    random.random(), np.random.rand(), np.random.randn(), torch.rand(2)  # move each off its seed
    torch.save({"rng": rng_state()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(4).tolist())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(4).tolist()) == expected
