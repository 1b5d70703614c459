"""One layer's cells computed on their own: the unit every executor runs."""

from __future__ import annotations

import pickle

import numpy as np
import torch

import walknoise
from walknoise.walk.cells import EVAL, LayerTask, LayerWork, compute_layer
from walknoise.walk.executors import run_in_worker
from walknoise.walk.plan import make_plan
from walknoise.walk.spec import ScanSpec, parse_sigmas

SIGMAS = "log:1e-2:1e2:7"


def work_for(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> LayerWork:
    spec = ScanSpec(sigmas=parse_sigmas(SIGMAS), repeats=2)
    return LayerWork(model, make_plan(model, data, spec))


def test_one_task_gives_the_layer_of_a_whole_scan(trained_mlp, data) -> None:
    whole = walknoise.scan(trained_mlp, data, sigmas=SIGMAS, repeats=2, progress=False)
    work = work_for(trained_mlp, data)
    done = compute_layer(work, LayerTask(1, "fc1", EVAL))
    assert done.task.layer == "fc1" and done.whole == {}
    np.testing.assert_array_equal(done.values["accuracy"], whole.accuracy.sel(layer="fc1"))
    assert done.values["midpoint"] == whole.dataset["midpoint"].sel(layer="fc1").item()


def test_shipped_work_computes_the_same_after_pickling(trained_mlp, data) -> None:
    work = work_for(trained_mlp, data)
    shipped = pickle.loads(pickle.dumps(work.portable(threads=torch.get_num_threads())))
    here = compute_layer(work, LayerTask(3, "fc2", EVAL))
    (there,) = run_in_worker(shipped, [LayerTask(3, "fc2", EVAL)])
    for name, value in here.values.items():
        np.testing.assert_array_equal(there.values[name], value, err_msg=name)


def test_portable_copies_nothing_already_on_the_cpu(trained_mlp, data) -> None:
    work = work_for(trained_mlp, data).portable(threads=2)
    assert work.model is trained_mlp and work.threads == 2
    assert work.localized() is work  # spec.device is cpu: nothing to move
