"""Throughput of one SSL training step per method: two augmented views, forward, backward, optimiser step.

Images/second counts input images (each yields two views). Usage:
    python benchmarks/train.py --steps 5 --batch-size 128 --backbones small_cnn resnet18 --devices cpu cuda
CUDA rows are skipped (with a note) when no GPU is visible.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from sweep.config.schema import METHOD_NAMES, METHOD_SCHEMAS, AugmentConfig, BackboneConfig
from sweep.ssl import Augmenter, build_backbone, build_method

INPUT_SHAPE = (3, 32, 32)


@dataclass
class Row:
    device: str
    backbone: str
    method: str
    batch_size: int
    steps: int
    step_ms: float

    @property
    def images_per_s(self) -> float:
        return self.batch_size / (self.step_ms / 1000)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_method(method: str, backbone: str, device: torch.device, batch_size: int, steps: int, warmup: int,
                width: int) -> Row:
    """Mean step time over ``steps`` timed steps after ``warmup`` untimed ones (cudnn autotune, allocator)."""
    torch.manual_seed(0)
    net, feat_dim = build_backbone(BackboneConfig(name=backbone, width=width), INPUT_SHAPE)
    model = build_method(METHOD_SCHEMAS[method](), net, feat_dim).to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    augment = Augmenter(AugmentConfig(crop_scale=[0.2, 1.0]))
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch_size, *INPUT_SHAPE, device=device)

    def step(i: int) -> None:
        loss = model.loss(augment(x, gen), augment(x, gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_step(i / max(1, steps))

    for i in range(warmup):
        step(i)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    return Row(device.type, backbone, method, batch_size, steps, 1000 * (time.perf_counter() - start) / steps)


def format_table(rows: list[Row]) -> str:
    head = f"{'device':<7}{'backbone':<11}{'method':<14}{'batch':>6}{'steps':>6}{'ms/step':>10}{'img/s':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.device:<7}{r.backbone:<11}{r.method:<14}{r.batch_size:>6}{r.steps:>6}"
                     f"{r.step_ms:>10.1f}{r.images_per_s:>10.1f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES)
    p.add_argument("--backbones", nargs="+", default=["small_cnn"],
                   choices=["small_cnn", "resnet18", "resnet50"])
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--resnet-steps", type=int, default=2, help="timed steps for ResNets on CPU (slow)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--width", type=int, default=32, help="small_cnn base width")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[Row] = []
    for dev in args.devices:
        if dev == "cuda" and not torch.cuda.is_available():
            print("cuda: no GPU visible, skipped")
            continue
        device = torch.device(dev)
        for backbone in args.backbones:
            steps = args.resnet_steps if (dev == "cpu" and backbone.startswith("resnet")) else args.steps
            for method in args.methods:
                row = time_method(method, backbone, device, args.batch_size, steps, args.warmup, args.width)
                rows.append(row)
                print(format_table([row]).splitlines()[-1], flush=True)
    print(f"\ntorch {torch.__version__}, {args.threads} CPU thread(s)"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    print(format_table(rows))


if __name__ == "__main__":
    main()
