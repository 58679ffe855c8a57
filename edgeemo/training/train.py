"""Train an emotion network on FER2013 train.npz; report on the public test each epoch.

Seeded. On the CPU (``make train``) it reproduces the shipped model up to the
non-determinism of multi-threaded kernels, a few tenths of a percent. On a GPU
(``--device cuda``, ``scripts/train-accelerator.sh``) the data sits in device memory, the
augmentation runs there, convolutions run in bf16, and ``--time-budget`` sizes the epochs to
the time a lease allows. No checkpoint is selected by its test score: the final EMA weights
are what ships.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeemo.ferdata import FER2013_CLASSES, ferplus_majority
from edgeemo.training.augment import augment
from edgeemo.training.data import Split, load_split
from edgeemo.training.distill import build_view_bank, fold_of, teacher_folds
from edgeemo.training.net import ARCHS, EmoNet, VGGTeacher, load_trained


def class_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    """Inverse-frequency weights to the given power, mean 1 over the samples."""
    counts = np.bincount(labels, minlength=len(FER2013_CLASSES)).astype(np.float64)
    w = counts**-power
    w /= (w[labels]).mean()
    return torch.tensor(w, dtype=torch.float32)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch: int = 512, device: str = "cpu") -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).to(device).float().div_(255).unsqueeze(1)
        out.append(F.softmax(model(x.contiguous(memory_format=torch.channels_last)), dim=1).cpu().numpy())
    return np.concatenate(out)


def share(hits: np.ndarray) -> float | None:
    return round(float(hits.mean()), 4) if len(hits) else None


class EpochPlan:
    """How many epochs fit: fixed by ``--epochs``, or sized from measured epoch times to end
    inside ``--time-budget`` seconds (counted from the process start, so loading the data and
    labelling the teacher's views are paid for too). The plan is re-sized after epochs 1, 2, 5,
    10 and 20 only (the first includes warm-up; runs sharing a GPU speed up or slow down as
    their neighbours start and stop), so the cosine schedule is settled early."""

    RESIZE_AFTER = (1, 2, 5, 10, 20)

    def __init__(self, epochs: int, budget_s: float, started: float) -> None:
        self.total, self.cap, self.budget_s, self.started = epochs, epochs, budget_s, started

    def after_epoch(self, done: int, epoch_s: float) -> None:
        if not self.budget_s or done not in self.RESIZE_AFTER:
            return
        left = self.budget_s - (time.monotonic() - self.started)
        # 10% of what is left stays in reserve for the final save and the process exit.
        self.total = min(self.cap, done + max(0, int(0.9 * left / max(epoch_s, 1e-3))))

    def out_of_time(self) -> bool:
        return bool(self.budget_s) and time.monotonic() - self.started > self.budget_s


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=Path("../shared/data/fer2013"))
    p.add_argument("--out", type=Path, default=Path("build/train"))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--arch", choices=ARCHS, default="emonet", help="vgg: the GPU teacher, never shipped")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--residual", action="store_true")
    p.add_argument("--deep", action="store_true", help="one more conv at 12x12 and at 6x6")
    p.add_argument("--ferplus-weight", type=float, default=0.3)
    p.add_argument("--class-power", type=float, default=0.3)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--time-budget",
        type=float,
        default=0,
        help="seconds for the whole run: the epoch count is sized from measured epoch times "
        "(at most --epochs) and training stops in time; the chosen count is saved in the "
        "checkpoint, so --epochs N reproduces it",
    )
    p.add_argument("--save-bf16", action="store_true", help="checkpoint weights in bf16 (half the file)")
    p.add_argument(
        "--precision",
        choices=["bf16", "fp32"],
        default="bf16",
        help="bf16 autocast (weights stay fp32): 1.75x faster where the CPU has avx512_bf16",
    )
    p.add_argument("--seed", type=int, default=20261121)
    p.add_argument("--limit", type=int, default=0, help="use only N training images (pilot runs)")
    p.add_argument("--test-limit", type=int, default=0, help="report on the first N public-test faces only")
    p.add_argument(
        "--val",
        type=int,
        default=0,
        help="hold out N training images (fixed split) and report on them: compare recipes "
        "without choosing anything by the public test's score",
    )
    p.add_argument(
        "--teacher",
        type=Path,
        action="append",
        help="distil from this trained model.pt (repeat: the teachers' mean probabilities)",
    )
    p.add_argument(
        "--fold",
        default=None,
        metavar="K/N",
        help="train on all but fold K of N (a fixed split of the training set): N teachers with "
        "--fold 0/N .. N-1/N each label, when distilling, only the faces they never saw",
    )
    p.add_argument("--teacher-views", type=int, default=12, help="views per image the teacher labels")
    p.add_argument("--teacher-weight", type=float, default=0.7, help="teacher's share of the target")
    a = p.parse_args(argv)
    for t in a.teacher or []:
        if not t.is_file():
            p.error(f"--teacher {t}: no such checkpoint (a model.pt written by this script)")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {a.device}: PyTorch sees no CUDA device (torch {torch.__version__})")
    if a.teacher_views < 1 or not 0 <= a.teacher_weight <= 1:
        p.error("--teacher-views must be at least 1 and --teacher-weight between 0 and 1")
    fold = None
    if a.fold is not None:
        k, _, n_folds = a.fold.partition("/")
        if not (k.isdigit() and n_folds.isdigit() and 0 <= int(k) < int(n_folds) and int(n_folds) >= 2):
            p.error(f"--fold {a.fold}: expected K/N with 0 <= K < N and N >= 2, e.g. 0/3")
        fold = (int(k), int(n_folds))

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    dev = torch.device(a.device)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    if dev.type == "cuda":
        # Fixed shapes every step: let cuDNN pick its fastest kernels once.
        torch.backends.cudnn.benchmark = True
    a.out.mkdir(parents=True, exist_ok=True)

    train = load_split(a.data / "train.npz", ferplus_weight=a.ferplus_weight, drop_not_a_face=True)
    test_file = a.data / "publictest.npz"
    if test_file.is_file():
        with np.load(test_file) as d:
            keep_test = slice(0, a.test_limit or None)
            test_images, test_labels = d["images"][keep_test], d["labels"][keep_test]
            test_plus = ferplus_majority(d["ferplus_votes"][keep_test])
    else:
        # Only reported, never used to choose anything, so a run may go without it.
        print(f"no {test_file}: the curve will have no public-test figures", flush=True)
        test_images = np.zeros((0, 48, 48), np.uint8)
        test_labels = test_plus = np.zeros(0, np.int64)
    if a.val:
        # Seed 0, not --seed: every recipe compared is scored on the same held-out faces.
        order = np.random.default_rng(0).permutation(len(train.labels))
        val_images, val_labels = train.images[order[: a.val]], train.labels[order[: a.val]]
        keep = np.sort(order[a.val :])
        train = Split(train.images[keep], train.labels[keep], train.targets[keep])
    n_total = len(train.labels)  # the fold split is over these, so teachers and students agree
    if a.limit:
        train = Split(train.images[: a.limit], train.labels[: a.limit], train.targets[: a.limit])
    if fold is not None:
        keep = np.flatnonzero(fold_of(n_total, fold[1])[: len(train.labels)] != fold[0])
        train = Split(train.images[keep], train.labels[keep], train.targets[keep])
        print(
            f"fold {fold[0]}/{fold[1]}: training on {len(keep)} faces; the rest are for distilling",
            flush=True,
        )
    n = len(train.labels)
    # FER2013 is small (28k x 48 x 48): the whole set lives on the device.
    x_all = torch.from_numpy(train.images[:n]).to(dev).float().div_(255).unsqueeze(1)
    t_all = torch.from_numpy(train.targets[:n]).to(dev)
    weights = class_weights(train.labels[:n], a.class_power)
    w_all = weights.to(dev)[torch.from_numpy(train.labels[:n]).to(dev)]
    print(f"train {n} images on {dev}; class weights {np.round(weights.numpy(), 2).tolist()}", flush=True)
    bank = None
    if a.teacher:
        t_start = time.time()
        teacher = load_trained(a.teacher)
        folds = None
        if any(f is not None for f in teacher.folds):
            folds = teacher_folds(teacher, a.teacher, n_total, n, dev)
        bank = build_view_bank(teacher.to(dev), x_all, a.teacher_views, g, folds=folds)
        agree = (bank.probs[0].argmax(1).cpu() == torch.from_numpy(train.labels[:n])).float().mean()
        print(
            f"teacher: {a.teacher_views} views labelled in {(time.time() - t_start) / 60:.1f} min; "
            f"agrees with FER2013 on {agree:.1%} of clean training images",
            flush=True,
        )

    if a.arch == "vgg":
        model: torch.nn.Module = VGGTeacher()
    else:
        model = EmoNet(width=a.width, residual=a.residual, deep=a.deep)
    model = model.to(dev, memory_format=torch.channels_last)
    ema = copy.deepcopy(model)
    for q in ema.parameters():
        q.requires_grad_(False)
    decay, no_decay = [], []
    for name, q in model.named_parameters():
        (no_decay if q.ndim == 1 or name.endswith(".bias") else decay).append(q)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0}],
        lr=a.lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = n // a.batch
    plan = EpochPlan(a.epochs, a.time_budget, started)
    warmup = 2 * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return a.lr * (step + 1) / warmup
        total = plan.total * steps_per_epoch
        return 0.5 * a.lr * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    ema_buffers, model_buffers = list(ema.buffers()), list(model.buffers())
    curve = []
    step, t0 = 0, time.time()
    epoch = 0
    while epoch < plan.total and not plan.out_of_time():
        e0 = time.monotonic()
        model.train()
        perm = torch.randperm(n, generator=g, device=dev)
        seen, loss_sum = 0, torch.zeros((), device=dev)
        for b in range(steps_per_epoch):
            if b % 16 == 0 and plan.out_of_time():
                break  # a first epoch slower than the whole budget still ends in time
            idx = perm[b * a.batch : (b + 1) * a.batch]
            if bank is None:
                x, target = augment(x_all[idx].clone(), g), t_all[idx]
            else:
                x, t_teacher = bank.batch(idx, g)
                target = a.teacher_weight * t_teacher + (1 - a.teacher_weight) * t_all[idx]
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
                out = model(x)
            logp = F.log_softmax(out.float(), dim=1)
            loss = (-(target * logp).sum(dim=1) * w_all[idx]).mean()
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # EMA warms up: early weights are mostly noise. foreach: one kernel, not one per tensor.
            d = min(a.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_mul_(ema_params, d)
                torch._foreach_add_(ema_params, [q.detach() for q in model_params], alpha=1 - d)
                for be, bm in zip(ema_buffers, model_buffers, strict=True):
                    be.copy_(bm)
            step += 1
            seen += len(idx)
            loss_sum += loss.detach() * len(idx)
        epoch += 1
        pred = predict(ema, test_images, device=a.device).argmax(1) if len(test_images) else test_labels
        ok = test_plus >= 0
        epoch_s = time.monotonic() - e0
        plan.after_epoch(epoch, epoch_s)
        row = {
            "epoch": epoch,
            "of": plan.total,
            "minutes": round((time.time() - t0) / 60, 2),
            "epoch_s": round(epoch_s, 2),
            "train_loss": round(float(loss_sum) / max(seen, 1), 4),
            "publictest_accuracy": share(pred == test_labels),
            "publictest_ferplus_accuracy": share(pred[ok] == test_plus[ok]),
            "lr": round(lr_at(step - 1), 5),
        }
        if a.val:
            from edgeemo.tools.evaluate import scores  # imports the daemon's stack: CPU runs only

            v = scores(val_labels, predict(ema, val_images, device=a.device).argmax(1))
            row["val_accuracy"], row["val_macro_f1"] = v["accuracy"], v["macro_f1"]
        curve.append(row)
        print(json.dumps(row), flush=True)
        state = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
        if a.save_bf16:
            state = {k: v.bfloat16() if v.is_floating_point() else v for k, v in state.items()}
        args = vars(a) | {"data": str(a.data), "out": str(a.out), "epochs": plan.total, "n_total": n_total}
        args["teacher"] = [str(t) for t in a.teacher or []]
        torch.save({"state_dict": state, "args": args, "epoch": epoch}, a.out / "model.pt")
        (a.out / "curve.json").write_text(json.dumps(curve, indent=1))
    if epoch < plan.total:
        print(f"time budget spent after {epoch} of {plan.total} epochs; last EMA weights saved", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
