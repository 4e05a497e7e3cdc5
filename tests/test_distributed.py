"""Two CPU processes (gloo) launched by accelerate give the results of one: same metrics and CIs, every
id recorded once, no shard file left; an interrupted multi-process run is finished by one process
without redoing its lines; a training step on two processes gives one process's weights."""

import importlib.util
import json
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("torch", reason="several processes need torch.distributed")

from aesbench.adapter import load_model  # noqa: E402
from aesbench.runs import PREDICTIONS, RUN, SHARD, SHARDS, evaluate  # noqa: E402
from aesbench.task import load_task  # noqa: E402

TASKS = ("tiny-ava-score", "tiny-flickr-aes-piaa")


def launch(*args, timeout=300):
    """`accelerate launch` with 2 processes on this machine (torchrun where accelerate is missing)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    if importlib.util.find_spec("accelerate"):  # --multi_gpu: without GPUs it starts CPU processes (gloo)
        launcher = [
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            port,
        ]
    else:
        launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    return subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, timeout=timeout)


def ids_in(path):
    lines = [json.loads(line) for line in open(path)]
    return [line["id"] for line in lines if "id" in line]


@pytest.fixture(scope="module")
def single_root(tmp_path_factory):
    """Each task run by one process, in this one."""
    root = tmp_path_factory.mktemp("one")
    for name in TASKS:
        evaluate(load_task(name), root / name, model=load_model("handcrafted"))
    return root


def test_two_processes_give_the_results_of_one(single_root, tmp_path):
    done = launch(
        "-m", "aesbench", "suite", "--tasks", ",".join(TASKS), "--models", "handcrafted", "--output", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("suite") == 1  # rank 0 alone reports
    for name in TASKS:
        folder = tmp_path / name / "handcrafted"
        results, single = (json.loads((f / "results.json").read_text()) for f in (folder, single_root / name))
        assert results["metrics"] == single["metrics"] and results["ci95"] == single["ci95"], name
        assert results["n"] == single["n"] and results["provenance"]["processes"] == 2
        ids = ids_in(folder / PREDICTIONS)
        assert len(ids) == len(set(ids)) and set(ids) == set(ids_in(single_root / name / PREDICTIONS)), name
        assert not list(folder.glob(SHARDS))
        assert json.loads((folder / RUN).read_text()) == json.loads((single_root / name / RUN).read_text())


def test_one_process_finishes_an_interrupted_multi_process_run(single_root, tmp_path):
    source = single_root / "tiny-ava-score"
    header, *lines = open(source / PREDICTIONS).read().splitlines(keepends=True)  # shards start with the run's header
    # Two shards of a killed run: rank 0 had recorded 10 items, rank 1 15 and was cut mid-line.
    (tmp_path / SHARD.format(0)).write_text(header + "".join(lines[:10]))
    (tmp_path / SHARD.format(1)).write_text(header + "".join(lines[10:25]) + lines[25][:20])
    model, scored = load_model("handcrafted"), []
    score = model.score
    model.score = lambda images, request: scored.extend(images) or score(images, request)
    results = evaluate(load_task("tiny-ava-score"), tmp_path, model=model)
    assert len(scored) == 60 - 25 and results["resumed_from"] == 25
    ids = ids_in(tmp_path / PREDICTIONS)
    assert len(ids) == len(set(ids)) == 60 and ids[:25] == ids_in(source / PREDICTIONS)[:25]
    assert not list(tmp_path.glob(SHARDS))
    finished, single = (json.loads((f / "results.json").read_text()) for f in (tmp_path, source))
    assert finished["metrics"] == single["metrics"] and finished["ci95"] == single["ci95"]


# A linear model trained 3 steps on 11 samples, batches of 5: the processes' shards differ in size and
# the last batch has one sample, so one process has none. Gradient accumulation splits each shard.
TRAIN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from aesbench import distributed
    from aesbench.training import Schedule, StagePlan, run_stage

    def train(output):
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        module = torch.nn.Linear(4, 1)

        def build(epoch, index):
            x = torch.arange(4, dtype=torch.float32) * (index + 1) / 10 - epoch
            return x, torch.sin(x).sum()

        def loss_fn(net, samples):
            x = torch.stack([s[0] for s in samples])
            y = torch.stack([s[1] for s in samples])
            return {"mse": ((net(x)[:, 0] - y) ** 2).mean()}

        schedule = Schedule(epochs=1, batch_size=5, grad_accum=2, lr=0.05, warmup=0.0)
        run_stage(StagePlan("tiny", module, list(module.parameters()), 11, build, loss_fn, schedule, 0, "no"), output)
        if int(__import__("os").environ.get("RANK", "0")) == 0:
            weights = {k: v.tolist() for k, v in module.state_dict().items()}
            (output / "weights.json").write_text(json.dumps(weights))
        distributed.finish()

    if __name__ == "__main__":
        train(sys.argv[1])
""")


def test_two_process_training_gives_the_weights_of_one(tmp_path):
    pytest.importorskip("accelerate")
    script = tmp_path / "train_tiny.py"
    script.write_text(TRAIN)
    done = launch(str(script), str(tmp_path / "two"), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    subprocess.run([sys.executable, str(script), str(tmp_path / "one")], check=True, timeout=120)
    one, two = (json.loads((tmp_path / run / "weights.json").read_text()) for run in ("one", "two"))
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-5, err_msg=name)
    logs = [[json.loads(line) for line in open(tmp_path / run / "train_log.jsonl")] for run in ("one", "two")]
    assert len(logs[0]) == len(logs[1]) == 3
    for a, b in zip(*logs):  # the whole batch's loss, not rank 0's, and the schedule moved once a step
        assert b["lr"] == a["lr"] and b["loss"] == pytest.approx(a["loss"], abs=1e-5)
