"""Two-process DDP (gloo, CPU): ranks end with identical weights equal to the single-process
average-of-shard-gradients reference; the torchrun CLI path runs and checkpoints on rank 0."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

from dtp_stereo.checkpoint import load_checkpoint
from dtp_stereo.models import build_model
from training.config import DistillCfg, OptimCfg, StageCfg
from training.data.datasets import build_dataset
from training.distill import Distiller
from training.trainer import StageRun, make_loader, make_optimizer, make_scheduler

ROOT = Path(__file__).resolve().parents[1]
STUDENT = dict(max_disparity=16, stem=(8, 8, 8), layer1_mids=(8,), layer1_out=8,
               layer2_mids=(8,), layer2_out=8, fuse=(8, 8), c2d=(8, 8), pre=(8,),
               hourglass=(8, 8, 8, 8), classifier=8)
DATA = {"name": "synthetic", "split": "train", "size": 8, "height": 32, "width": 64,
        "max_disparity": 16}
STEPS, SEED = 3, 5
OPTIM = OptimCfg(lr=1e-3, batch_size=1, steps=STEPS, scheduler="cosine")
LOSS = DistillCfg(supervision="gt", points=())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from training import distributed
    from training.trainer import train_stage

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = distributed.init_from_env("cpu")
    assert info.world_size == world and info.rank == rank
    try:
        torch.manual_seed(0)
        student = build_model("dtpnet", **STUDENT)
        run = StageRun("distill", Distiller(student, None, LOSS), "dtpnet",
                       build_dataset(DATA), Path(out_dir) / "stage", seed=SEED,
                       progress=False, tensorboard=False)
        summary = train_stage(run, StageCfg(optim=OPTIM, loss=LOSS, checkpoint_every=0))
        assert summary["finished"]
        torch.save(student.state_dict(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


def _reference() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: same reduction order
    try:
        return _reference_run()
    finally:
        torch.set_num_threads(threads)


def _reference_run() -> dict:
    torch.manual_seed(0)
    student = build_model("dtpnet", **STUDENT)
    d = Distiller(student, None, LOSS).train()
    data = build_dataset(DATA)
    opt = make_optimizer(d, OPTIM)
    sched = make_scheduler(opt, OPTIM, STEPS)
    for step in range(STEPS):
        opt.zero_grad()
        for rank in (0, 1):
            b = next(iter(make_loader(data, step, step + 1, 1, SEED, 0, rank, 2)))
            out = d(b["left"], b["right"], b["disparity"], b["valid"])
            (out.loss / 2).backward()  # DDP averages the two ranks' gradients
        opt.step()
        sched.step()
    return dict(student.named_parameters())


def test_two_ranks_identical_and_match_reference(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    ref = _reference()
    init = dict(build_model("dtpnet", **STUDENT).named_parameters())
    close = total = 0
    for name, p in ref.items():
        assert torch.equal(r0[name], r1[name]), name
        diff = (r0[name] - p.detach()).abs()
        # Adam normalises tiny gradients, so float-order noise may move a rare weight by ~lr
        assert float(diff.max()) <= 2 * OPTIM.lr * STEPS, name
        close += int((diff <= 1e-6).sum())
        total += diff.numel()
    assert close / total >= 0.99  # (in practice all weights are bit-identical)
    assert any(not torch.equal(r0[n], init[n]) for n in init)  # it trained
    ckpt = load_checkpoint(tmp_path / "stage" / "last.pt")  # written by rank 0 only
    assert ckpt.training_state["step"] == STEPS
    for name in ref:
        assert torch.equal(ckpt.state_dict[name], r0[name]), name


def test_torchrun_cli(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "training.cli",
           "--config", str(ROOT / "configs" / "tiny.yaml"), "--stages", "distill",
           "--run-dir", str(tmp_path / "run"), "--quiet", "threads=1", "tensorboard=false",
           "distill.loss.supervision=gt", "distill.loss.points=[]", "distill.optim.steps=2",
           "distill.optim.batch_size=1", "data.val=null", "data.test=null",
           "data.train.max_disparity=16",
           f"student_model.config={STUDENT}".replace("(", "[").replace(")", "]")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "distill" / "last.pt")
    assert ckpt.training_state["step"] == 2
    assert (tmp_path / "run" / "distill" / "best.pt").is_file()
