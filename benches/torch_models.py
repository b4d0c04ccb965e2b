#!/usr/bin/env python3
"""The PyTorch side of `cargo bench --bench model`: foldwise's two
architectures, layer for layer, timed the same way.

    python benches/torch_models.py [--models svhn-small,resnet-mini]
        [--batches 32,64] [--threads 2] [--heads 5] [--steps 3] [--seconds 2]
        [--device cpu|cuda|cuda:N]

Mirrors src/model/svhn_small.rs, src/model/resnet_mini.rs and
src/model/layers.rs: the same layer shapes, strides, paddings, biases,
element-wise dropout, floor-mode 2x2 max pooling, BatchNorm (eps 1e-5,
momentum 0.1), the mean over the height only before resnet-mini's heads, and
all heads as one Linear(features, heads * 11). Input 3x64x128.

Per configuration (model x batch), in its own child process:
- train: images/s of forward + cross-entropy summed over heads (batch mean
  per head) + backward + Adam step (lr 1e-3), one warm-up step, then at
  least --steps timed steps and --seconds seconds; batch / the median step
  time (the mean is reported too);
- infer: images/s of eval mode, no_grad, softmax over the 11 classes,
  measured the same way;
- peak RSS: the child's maximum resident set, read by the parent with
  wait4 (as the Rust bench reads its own children).

--device cuda (or cuda:N): the model, its optimizer state and the batch live
on the GPU; fp32, eager (no torch.compile, no autocast, TF32 off for
matrix products and convolutions), torch.backends.cudnn.benchmark left at
its default, False (cuDNN's heuristics choose each convolution's
algorithm, no autotuning); torch.cuda.synchronize() before every reading of
the clock, so a timed call includes all of its GPU work. The child also
reports "peak_gpu_mib" (torch.cuda.max_memory_allocated over the whole
child, the training steps' peak) and "gpu" (the device's name).

Prints one JSON object per configuration on stdout:
{"model", "batch", "threads", "device", "train_ips", "infer_ips",
 "train_ips_mean", "infer_ips_mean", "train_steps", "infer_passes",
 "peak_rss_kib", "torch"}, plus on a GPU "gpu", "peak_gpu_mib" and
"cudnn_benchmark". torch.set_num_threads(threads); OMP_NUM_THREADS and
MKL_NUM_THREADS are set for the child too.
"""

import argparse
import json
import os
import re
import subprocess
import sys

CLASSES = 11
HEIGHT, WIDTH = 64, 128


def build(arch, heads, p):
    import torch.nn as nn

    class Heads(nn.Module):
        """`heads` classifiers as one Linear; logits [N, heads, 11]."""

        def __init__(self, features):
            super().__init__()
            self.heads = heads
            self.lin = nn.Linear(features, heads * CLASSES)

        def forward(self, x):
            return self.lin(x).view(x.shape[0], self.heads, CLASSES)

    class SvhnSmall(nn.Module):
        # Conv(3→16, 3, s2) ReLU Dropout MaxPool(2); Conv(16→32, 3, s2) ReLU
        # Dropout MaxPool(2); flatten; heads. 64x128 → 32x3x7 = 672 features.
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, stride=2, padding=0, bias=True),
                nn.ReLU(),
                nn.Dropout(p),
                nn.MaxPool2d(2, 2),
                nn.Conv2d(16, 32, 3, stride=2, padding=0, bias=True),
                nn.ReLU(),
                nn.Dropout(p),
                nn.MaxPool2d(2, 2),
            )
            self.heads = Heads(32 * 3 * 7)

        def forward(self, x):
            return self.heads(self.features(x).flatten(1))

    class Block(nn.Module):
        # Two 3x3 pad-1 convs without bias, BN after each, ReLU after the
        # first and after the sum; 1x1 conv + BN shortcut when the shape
        # changes.
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
            self.proj = None
            if stride != 1 or cin != cout:
                self.proj = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, padding=0, bias=False),
                    nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1),
                )

        def forward(self, x):
            y = self.bn1(self.conv1(x)).relu()
            y = self.bn2(self.conv2(y))
            short = x if self.proj is None else self.proj(x)
            return (y + short).relu()

    class ResnetMini(nn.Module):
        # Stem Conv(3→32, 3, s2, p1) BN ReLU; blocks 32→32, 32→64 s2,
        # 64→128 s2; mean over the height only; Dropout; heads.
        # 64x128 → 128 channels x 16 columns = 2,048 features.
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
            self.stem_bn = nn.BatchNorm2d(32, eps=1e-5, momentum=0.1)
            self.blocks = nn.Sequential(
                Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2)
            )
            self.drop = nn.Dropout(p)
            self.heads = Heads(128 * 16)

        def forward(self, x):
            x = self.stem_bn(self.stem(x)).relu()
            x = self.blocks(x)
            x = x.mean(2).flatten(1)
            return self.heads(self.drop(x))

    if arch == "svhn-small":
        return SvhnSmall()
    if arch == "resnet-mini":
        return ResnetMini()
    raise SystemExit(f"unknown model {arch!r}")


def child(arch, batch, threads, heads, min_steps, min_seconds, device):
    import statistics
    import time

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    gpu = device != "cpu"
    if gpu:
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {device}: PyTorch sees no CUDA GPU")
        # fp32 throughout: no TF32 in matrix products or convolutions
        # (PyTorch 2.9 and later: fp32_precision; before: allow_tf32).
        if hasattr(torch.backends, "fp32_precision"):
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            torch.backends.cudnn.conv.fp32_precision = "ieee"
        else:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build(arch, heads, 0.25).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = (torch.rand(batch, 3, HEIGHT, WIDTH) * 2 - 1).to(dev)
    y = torch.randint(0, CLASSES, (batch, heads)).to(dev)

    def sync():
        if gpu:
            torch.cuda.synchronize(dev)

    def train_step():
        logits = model(x)
        # Sum over heads of the batch-mean cross-entropy.
        loss = F.cross_entropy(
            logits.reshape(-1, CLASSES), y.reshape(-1), reduction="sum"
        ) / batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    def infer():
        with torch.no_grad():
            return torch.softmax(model(x), dim=-1)

    def timed(f):
        f()  # warm-up
        sync()
        times = []
        start = time.perf_counter()
        while True:
            t = time.perf_counter()
            f()
            sync()
            times.append(time.perf_counter() - t)
            if len(times) >= min_steps and time.perf_counter() - start >= min_seconds:
                return times

    model.train()
    train_times = timed(train_step)
    model.eval()
    infer_times = timed(infer)
    median = statistics.median
    mean = statistics.fmean
    r = {
        "train_ips": batch / median(train_times),
        "infer_ips": batch / median(infer_times),
        "train_ips_mean": batch / mean(train_times),
        "infer_ips_mean": batch / mean(infer_times),
        "train_steps": len(train_times),
        "infer_passes": len(infer_times),
        "torch": torch.__version__,
    }
    if gpu:
        r.update(
            gpu=torch.cuda.get_device_name(dev),
            peak_gpu_mib=torch.cuda.max_memory_allocated(dev) / 2**20,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )
    print(json.dumps(r), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="svhn-small,resnet-mini")
    ap.add_argument("--batches", default="32,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", a.device):
        ap.error(f"--device {a.device!r}: expected cpu, cuda or cuda:N")
    if a.child:
        child(a.child[0], int(a.child[1]), a.threads, a.heads, a.steps, a.seconds, a.device)
        return
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(a.threads)
    for arch in a.models.split(","):
        for batch in (int(b) for b in a.batches.split(",")):
            cmd = [
                sys.executable, os.path.abspath(__file__),
                "--child", arch, str(batch),
                "--threads", str(a.threads), "--heads", str(a.heads),
                "--steps", str(a.steps), "--seconds", str(a.seconds),
                "--device", a.device,
            ]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
            out = p.stdout.read()
            p.stdout.close()
            # wait4 gives this child's own maximum resident set (KiB on Linux).
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            if p.returncode != 0:
                raise SystemExit(f"{arch} batch {batch}: child exited with {p.returncode}")
            r = json.loads(out.strip().splitlines()[-1])
            r.update(
                model=arch, batch=batch, threads=a.threads, device=a.device,
                peak_rss_kib=usage.ru_maxrss,
            )
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
