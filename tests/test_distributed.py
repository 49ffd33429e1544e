"""Scale-out with torch.distributed on the CPU (gloo): video sharding, the runner under several ranks,
`torchrun` evaluation of BMVOS against the single-process run, and DDP training through the shared trainer.

The torchrun tests launch `python -m torch.distributed.run --nproc_per_node=2` on 127.0.0.1 with a free port
and one thread per process; the DDP-equivalence tests fork two ranks of this process (no second torch import).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest
import torch
import torch.nn as nn

from common.data import synthetic
from common.data.datasets import DAVIS
from common.data.palette import read_label_png
from common.inference.runner import run_videos
from common.runtime.distributed import DistContext, init_distributed, shard, single_process
from common.runtime.errors import UserError
from common.training import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 240  # generous: the shared CI box is slow, but a hung collective must not hang the suite
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    """Tests start as a plain single process, even if the suite itself runs under torchrun."""
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(module: str, *args: str, nproc: int = 2) -> str:
    """Run `torchrun --nproc_per_node=nproc -m module args` on this machine; return stdout+stderr.

    Its own process group is killed on timeout, so no rank outlives a hung run."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", module, *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun {module} did not finish in {LAUNCH_TIMEOUT_S} s:\n{out[-4000:]}")
    assert proc.returncode == 0, f"torchrun {module} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


# ----------------------------------------------------------------------------------------------------------------
# shard and the single-process context
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Named:
    name: str


def ranks(world_size: int) -> List[DistContext]:
    return [DistContext(rank=r, world_size=world_size, local_rank=r) for r in range(world_size)]


def test_shard_is_sorted_round_robin_disjoint_and_complete():
    items = [Named(n) for n in ("e", "b", "a", "d", "c")]
    shards = [[i.name for i in shard(items, ctx)] for ctx in ranks(2)]
    assert shards == [["a", "c", "e"], ["b", "d"]]
    # the input order does not matter: every launch assigns the same videos to the same rank
    assert [[i.name for i in shard(list(reversed(items)), ctx)] for ctx in ranks(2)] == shards
    three = [shard(["v2", "v0", "v1", "v3"], ctx) for ctx in ranks(3)]
    assert three == [["v0", "v3"], ["v1"], ["v2"]]
    assert shard(["only"], ranks(4)[3]) == []  # more ranks than videos: the extra ranks just wait


def test_single_process_keeps_everything_in_order():
    items = [Named(n) for n in ("b", "a")]
    assert shard(items, None) == items and shard(items, single_process()) == items
    ctx = init_distributed(torch.device("cpu"))  # no torchrun environment
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (0, 1, 0)
    assert ctx.is_main and not ctx.enabled and ctx.device == torch.device("cpu")
    ctx.barrier()  # a no-op
    assert not torch.distributed.is_initialized()


def test_torchrun_with_one_process_is_a_plain_run(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    ctx = init_distributed("cpu")
    assert not ctx.enabled and not torch.distributed.is_initialized()


def test_broken_launch_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="MASTER_ADDR and MASTER_PORT"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserError, match="WORLD_SIZE='two'"):
        init_distributed("cpu")


# ----------------------------------------------------------------------------------------------------------------
# the runner with several ranks (stand-in contexts that record their barrier)
# ----------------------------------------------------------------------------------------------------------------

BARRIERS: List[int] = []


@dataclass(frozen=True)
class RecordingRank(DistContext):
    def barrier(self) -> None:
        BARRIERS.append(self.rank)


def copy_first_mask(video):
    first = video.load_given_masks()[0]
    return {i: first.copy() for i in range(len(video))}


def test_run_videos_writes_each_ranks_shard_then_waits(tmp_path):
    davis = DAVIS(synthetic.make_davis_sample(tmp_path / "DAVIS", n_videos=3, n_frames=2, height=32, width=32))
    names = sorted(davis.names)
    BARRIERS.clear()
    out = tmp_path / "out"
    stats = [run_videos(davis.videos(), copy_first_mask, out, device="cpu",
                        dist=RecordingRank(rank=r, world_size=2, local_rank=r)) for r in (0, 1)]
    assert [[v.name for v in s.videos] for s in stats] == [names[0::2], names[1::2]]  # each rank's own stats
    assert BARRIERS == [0, 1]
    single = tmp_path / "single"
    run_videos(davis.videos(), copy_first_mask, single, device="cpu")
    for name in names:
        for png in sorted((single / name).glob("*.png")):
            assert (out / name / png.name).read_bytes() == png.read_bytes()
    # resume: a relaunch skips what the rank already finished
    rerun = run_videos(davis.videos(), copy_first_mask, out, device="cpu",
                       dist=RecordingRank(rank=1, world_size=2, local_rank=1))
    assert rerun.videos == [] and rerun.skipped == names[1::2]


# ----------------------------------------------------------------------------------------------------------------
# torchrun end to end: BMVOS evaluation and training
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    davis = synthetic.make_davis_sample(root / "DAVIS", n_videos=3, n_frames=3, height=32, width=48)
    coco = synthetic.make_coco_sample(root / "COCO", n_images=2, height=32, width=48)
    from bmvos.model import BMVOS
    torch.manual_seed(0)
    weights = root / "seeded.pth"
    torch.save(BMVOS().state_dict(), weights)
    return {"root": root, "davis": davis, "coco": coco, "weights": weights}


def test_two_process_bmvos_evaluation_matches_single_process(sample, capsys):
    from bmvos import main_runfile
    common = ["--davis", str(sample["davis"]), "--weights", str(sample["weights"]), "--device", "cpu",
              "--native-size", "--eval-workers", "1", "--dataset", "DAVIS17_val"]
    single = sample["root"] / "single"
    assert main_runfile.main(common + ["--output", str(single)]) == 0
    single_text = capsys.readouterr().out
    multi = sample["root"] / "multi"
    text = torchrun("bmvos.main_runfile", *common, "--output", str(multi))

    assert text.count("Global results for val") == 1, text[-3000:]  # rank 0 alone scores and prints
    assert "[rank 0/2]" in text and "[rank 1/2]" in text
    jf = [line.split(";")[0] for line in single_text.splitlines() if line.startswith("davis17-val: J&F-Mean")]
    assert jf and jf[0] in text  # the same J&F as the single-process run
    videos = sorted(p.name for p in (single / "davis17-val").iterdir() if p.is_dir())
    assert len(videos) == 3
    assert sorted(p.name for p in (multi / "davis17-val").iterdir() if p.is_dir()) == videos  # nothing else
    for video in videos:
        pngs = sorted((single / "davis17-val" / video).glob("*.png"))
        assert len(pngs) == 3
        for png in pngs:
            other = multi / "davis17-val" / video / png.name
            np.testing.assert_array_equal(read_label_png(other), read_label_png(png), err_msg=str(other))
            assert other.read_bytes() == png.read_bytes()
    assert (multi / "davis17-val" / "global_results-val.csv").read_text() == \
        (single / "davis17-val" / "global_results-val.csv").read_text()


def test_two_process_ddp_training_smoke_run_checkpoints(sample):
    from bmvos.model import BMVOS
    out = sample["root"] / "ckpt"
    text = torchrun("bmvos.train", "--coco", str(sample["coco"]), "--davis", str(sample["davis"]),
                    "--stages", "coco", "--output-dir", str(out), "--init", "scratch", "--device", "cpu",
                    "--workers", "0", "--epochs", "2", "--batch-size", "2", "--clips-per-epoch", "4",
                    "--save-step", "1", "--val-step", "2", "--crop", "32", "--coco-clip-length", "3",
                    "--min-fg-pixels", "8")
    assert text.count("finished training") == 1, text[-3000:]  # rank 0 reports, validates and saves
    for name in ("coco_0001.pth", "coco_0002.pth", "coco_last.pth"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "coco_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and log[1]["score"] is not None
    last = torch.load(out / "coco_last.pth", weights_only=True)
    assert last["epoch"] == 2 and len(last["rank_rng"]) == 2
    model = BMVOS()
    model.load_state_dict(torch.load(out / "coco_0002.pth", weights_only=True))  # official key layout, no 'module.'
    model.load_state_dict(last["model"])


# ----------------------------------------------------------------------------------------------------------------
# DDP equals the single-process global batch (forked gloo ranks, toy model with a frozen encoder)
# ----------------------------------------------------------------------------------------------------------------

class FrozenEncoderToy(nn.Module):
    """Like the papers: an encoder run without gradient (untrained) feeding a trained head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward_train(self, imgs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        b, l, c, h, w = imgs.shape
        with torch.no_grad():
            feats = self.encoder(imgs[:, 1:].reshape(-1, c, h, w))
        return self.head(feats).view(b, l - 1, 2, h, w)


def toy_forward(model, imgs, masks):
    return model.forward_train(imgs, masks)


class IndexedClips(torch.utils.data.Dataset):
    """Clip i depends only on i (random=False) or on Python's `random` (random=True, like the real loaders)."""

    def __init__(self, use_rng: bool) -> None:
        self.use_rng = use_rng

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        seed = random.randrange(2**31) if self.use_rng else i
        imgs = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
        masks = (imgs.mean(1, keepdim=True) > 0.5).long()
        masks[0, 0, 0, 0], masks[0, 0, 0, 1] = 0, 1
        return {"imgs": imgs, "masks": masks}


def toy_train(out: Path, epochs: int, use_rng: bool, resume: bool = False) -> nn.Module:
    random.seed(3)
    torch.manual_seed(0)
    model = FrozenEncoderToy().eval()
    config = TrainConfig(save_name="toy", epochs=epochs, batch_size=4, save_step=1, val_step=1, lr=1e-2,
                         num_workers=0, shuffle=False, swap_attach_probability=0.0)
    Trainer(model, toy_forward, IndexedClips(use_rng), config, out, torch.device("cpu"),
            validate=lambda m: 0.5, resume=resume).train()
    return model


def run_forked_ranks(job: Callable[[int], None], world_size: int = 2) -> None:
    """Run `job(rank)` in `world_size` forked processes joined by a gloo group (torchrun's env variables)."""
    context = multiprocessing.get_context("fork")
    port = free_port()

    def rank_main(rank: int) -> None:
        code = 0
        try:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                              LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
            torch.set_num_threads(1)
            job(rank)
            torch.distributed.destroy_process_group()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)  # never run pytest's own teardown in a forked child

    procs = [context.Process(target=rank_main, args=(r,)) for r in range(world_size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(LAUNCH_TIMEOUT_S)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "a forked rank hung"
    assert [p.exitcode for p in procs] == [0] * world_size, "a forked rank failed (traceback above)"


def test_ddp_step_equals_single_process_global_batch_and_encoder_stays_frozen(tmp_path):
    single = toy_train(tmp_path / "single", epochs=2, use_rng=False)
    torch.manual_seed(0)
    initial = FrozenEncoderToy()

    def job(rank: int) -> None:
        model = toy_train(tmp_path / "ddp", epochs=2, use_rng=False)
        torch.save(model.state_dict(), tmp_path / f"rank{rank}.pt")

    run_forked_ranks(job)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in single.state_dict().items():
        assert torch.equal(states[0][key], states[1][key]), f"replicas diverged at {key}"
        torch.testing.assert_close(states[0][key], value, rtol=1e-5, atol=1e-6, msg=lambda m: f"{key}: {m}")
    for key in ("encoder.weight", "encoder.bias"):  # no gradient reaches it, so Adam never moves it
        assert torch.equal(states[0][key], initial.state_dict()[key])
    assert not torch.equal(states[0]["head.weight"], initial.state_dict()["head.weight"])
    # rank 0 alone wrote the checkpoints and the log
    files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert files == ["toy_0001.pth", "toy_0002.pth", "toy_best.pth", "toy_curves.png", "toy_last.pth", "toy_log.csv",
                     "toy_log.jsonl"]
    assert len((tmp_path / "ddp" / "toy_log.jsonl").read_text().splitlines()) == 2
    last = torch.load(tmp_path / "ddp" / "toy_last.pth", weights_only=True)
    assert len(last["rank_rng"]) == 2
    assert not any(k.startswith("module.") or k.startswith("model.") for k in last["model"])


def test_ddp_resume_continues_every_ranks_random_stream(tmp_path):
    def job(rank: int) -> None:
        straight = toy_train(tmp_path / "straight", epochs=2, use_rng=True)
        toy_train(tmp_path / "resumed", epochs=1, use_rng=True)
        resumed = toy_train(tmp_path / "resumed", epochs=2, use_rng=True, resume=True)
        for key, value in straight.state_dict().items():
            assert torch.equal(value, resumed.state_dict()[key]), key
        if rank == 0:  # the ranks drew different clips: per-rank seeding
            torch.save(torch.tensor(0), tmp_path / "ok.pt")

    run_forked_ranks(job)
    assert (tmp_path / "ok.pt").is_file()
    last = torch.load(tmp_path / "resumed" / "toy_last.pth", weights_only=True)
    streams = [state["python"][1] for state in last["rank_rng"]]
    assert streams[0] != streams[1], "both ranks drew the same random clips"
