"""Images/s of the train job's step beside a plain hand-written PyTorch loop, same model, data and precision.

"ours" is ``sweep.train.job.run_epoch`` on a real trial (uint8 batches streamed from the data set, converted on
the device, two augmented views, autocast, backward, optimiser + schedule step, per-step NaN check, EMA hook);
"plain" is the loop one writes by hand: index the uint8 array, move, augment, ``model.loss``, backward, step.
Both are timed in alternating rounds (the best round each), so load from other processes hits both alike.
Target: ours within 10% of plain (ratio >= 0.90). Data are fake CIFAR-10 (32 px) / STL-10 (96 px) files of
random pixels written to a temporary folder, so nothing is downloaded. Usage:

    python benchmarks/train.py                                  # CPU: small_cnn, SimCLR + Barlow Twins, 32 px
    python benchmarks/train.py --devices cuda --backbones resnet18 resnet50 --sizes 32 96 --precision bf16 \\
        --batch-size 256 --steps 20
"""
from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_best

from sweep.config import compose_train_config
from sweep.data import resize

N_IMAGES = 2560  # rows in the fake data set (enough distinct batches; the data are never all in one batch)
DATA_FOR_SIZE = {32: "cifar10", 96: "stl10"}


@dataclass
class Row:
    device: str
    backbone: str
    method: str
    size: int
    precision: str
    batch_size: int
    ours: float  # images / s
    plain: float

    @property
    def ratio(self) -> float:
        return self.ours / self.plain


# ----------------------------------------------------------------------------- fake data on disk
def write_fake_cifar(root: Path, n: int, rng: np.random.Generator) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per = n // 5
    for name, rows in [*((f"data_batch_{i}", per) for i in range(1, 6)), ("test_batch", per)]:
        blob = {b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
                b"labels": [int(v) for v in rng.integers(0, 10, rows)]}
        (folder / name).write_bytes(pickle.dumps(blob))
    return root


def write_fake_stl(root: Path, n: int, rng: np.random.Generator) -> Path:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", n), ("test", n // 5)):
        rng.integers(0, 256, rows * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{name}_X.bin")
        (rng.integers(0, 10, rows) + 1).astype(np.uint8).tofile(folder / f"{name}_y.bin")
    return root


# ----------------------------------------------------------------------------- the two loops
def build(args: argparse.Namespace, device: str, backbone: str, method: str, size: int, root: Path,
          run_dir: Path) -> Any:
    """A real trial of the train job (its data, model, augmenter, optimiser) with ``args.steps`` steps/epoch."""
    from omegaconf import OmegaConf

    from sweep.train.job import build_trial
    from sweep.train.config_check import validate_train_config

    overrides = [f"method={method}", f"backbone={backbone}", f"data={DATA_FOR_SIZE[size]}", f"data.root={root}",
                 "data.image_size=null", "data.monitor_size=64", "augment=cifar", f"batch_size={args.batch_size}",
                 "epochs=1000", "optim=lars", "optim.warmup_epochs=0", f"device={device}",
                 f"precision={args.precision}", f"channels_last={str(args.channels_last).lower()}",
                 f"compile={str(args.compile).lower()}"]
    cfg = compose_train_config(overrides, run_dir=str(run_dir))
    validate_train_config(cfg)
    trial = build_trial(OmegaConf.to_object(cfg), torch.device(device), run_dir)
    trial.steps_per_epoch = args.steps
    return trial


def plain_loop(trial: Any, steps: int, batch_size: int) -> Callable[[int], None]:
    """The hand-written loop on the same model object, data array, augmenter, optimiser and precision."""
    pixels = torch.from_numpy(np.ascontiguousarray(trial.data.train.read.pixels))
    n, device, model, opt, aug = pixels.shape[0], trial.device, trial.model, trial.optimizer, trial.augmenter
    channels_last = trial.cfg.channels_last
    dtype = trial.amp_dtype
    step_fn = torch.compile(model.loss) if trial.cfg.compile else model.loss

    def run(epoch: int) -> None:
        gen = torch.Generator(device=device).manual_seed(epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for b in range(steps):
            x = pixels[order[b * batch_size : (b + 1) * batch_size]].to(device, non_blocking=True)
            x = resize(x.float().div_(255.0), trial.data.image_size)
            v1, v2 = aug(x, gen), aug(x, gen)
            if channels_last:
                v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = step_fn(v1, v2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.after_step(0.5)

    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, device: str, backbone: str, method: str, size: int, root: Path,
            work: Path) -> Row:
    from sweep.train.job import run_epoch

    trial = build(args, device, backbone, method, size, root, work / f"{backbone}_{method}_{size}")
    plain = plain_loop(trial, args.steps, args.batch_size)
    epoch = iter(range(1, 10**6))

    def ours() -> None:
        run_epoch(trial, next(epoch))
        _sync(trial.device)

    def hand() -> None:
        plain(next(epoch))
        _sync(trial.device)

    ours(), hand()  # warm-up: allocator, cuDNN autotune, torch.compile
    best = interleaved_best({"ours": ours, "plain": hand}, args.repeats)
    images = args.steps * args.batch_size
    return Row(device, backbone, method, size, args.precision, args.batch_size,
               images / best["ours"][0], images / best["plain"][0])


def format_table(rows: list[Row]) -> str:
    head = (f"{'device':<7}{'backbone':<10}{'method':<14}{'px':>4}{'prec':>6}{'batch':>6}"
            f"{'ours img/s':>12}{'plain img/s':>13}{'ratio':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.device:<7}{r.backbone:<10}{r.method:<14}{r.size:>4}{r.precision:>6}{r.batch_size:>6}"
                     f"{r.ours:>12.1f}{r.plain:>13.1f}{r.ratio:>7.2f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["simclr", "barlow_twins"])
    p.add_argument("--backbones", nargs="+", default=["small_cnn"])
    p.add_argument("--sizes", nargs="+", type=int, default=[32], choices=sorted(DATA_FOR_SIZE))
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds (best of each)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = {32: write_fake_cifar(Path(tmp) / "c", N_IMAGES, rng), 96: write_fake_stl(Path(tmp) / "s", N_IMAGES, rng)}
        for dev in args.devices:
            if dev == "cuda" and not torch.cuda.is_available():
                print("cuda: no GPU visible, skipped", flush=True)
                continue
            for backbone in args.backbones:
                for size in args.sizes:
                    for method in args.methods:
                        t0 = time.perf_counter()
                        row = measure(args, dev, backbone, method, size, roots[size], Path(tmp) / "runs")
                        rows.append(row)
                        print(format_table([row]).splitlines()[-1] + f"   ({time.perf_counter() - t0:.0f} s)",
                              flush=True)
    print(f"\ntorch {torch.__version__}, {args.threads} CPU thread(s)"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
          + f"; {args.steps} steps x {args.repeats} alternating rounds, best round; target ratio >= 0.90")
    print(format_table(rows))


if __name__ == "__main__":
    main()
