"""The training loop: plain PyTorch, no gRPC, no processes (the worker wraps it).

Determinism: the model is initialized from ``seed``; every epoch reseeds dropout and shuffling from
(seed, epoch, rank), and the learning rate is a function of the epoch. So a run resumed from an epoch
checkpoint continues exactly as if it had never stopped, and the same request gives the same weights.
A checkpoint (model, optimizer and early-stopping state, history) is written atomically after each epoch,
as safetensors plus JSON metadata: nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from aiaas_services.datasets import Splits
from aiaas_services.modelzoo import StandardizedModel
from aiaas_services.modelzoo.zoo import Vae
from aiaas_services.training.evaluation import evaluate_tensors
from aiaas_services.training.paths import CHECKPOINT_FILE
from aiaas_services.training.spec import HIGHER_IS_BETTER, TrainConfig
from aiaas_services.training.tensorfile import Rewriter, spare_path

CHUNK_BYTES = 16 * 2**20  # the most training rows gathered at once per epoch (see Trainer._shuffled_chunks)


class Cancelled(Exception):
    """The job was cancelled; raised between batches."""


@dataclasses.dataclass
class Progress:
    """State carried from epoch to epoch (and through a checkpoint)."""

    epoch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False


@dataclasses.dataclass
class Hooks:
    """How the loop talks to its host: epoch reports, messages, and the cancel check."""

    on_epoch: Callable[[dict[str, Any]], None] = lambda record: None
    on_message: Callable[[str], None] = lambda text: None
    cancelled: Callable[[], bool] = lambda: False


@dataclasses.dataclass
class Distributed:
    """Rank and size of a DDP group (size 1: a single process)."""

    rank: int = 0
    size: int = 1


def configure_torch(threads: int) -> None:
    """Fixed threads and deterministic kernels, so a result is reproducible on the CPU; denormal floats
    flushed to zero, because Adam's moments for a weight that never gets a gradient (a constant input)
    decay into the denormal range, where arithmetic runs microcode-slow."""
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True)
    torch.set_flush_denormal(True)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of a 1-based epoch under the configured schedule."""
    if config.schedule == "step":
        return config.learning_rate * config.gamma ** ((epoch - 1) // config.step_size)
    if config.schedule == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / config.epochs))
    return config.learning_rate


def make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """The configured optimizer with its multi-tensor (``foreach``) update, which PyTorch picks by default
    only for CUDA tensors: on the CPU too it is the same arithmetic in one call per step instead of a
    Python loop over the parameters."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay, foreach=True
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True)
    return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True)


def seed_epoch_randomness(seed: int, device: torch.device) -> None:
    """Seed dropout and VAE noise for one epoch. On the CPU only the CPU generator is seeded:
    ``torch.manual_seed`` would also queue a lazy seed, with a captured stack trace, for every accelerator
    backend."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def batch_loss(
    model: StandardizedModel, x: torch.Tensor, y: torch.Tensor, task: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss the optimizer minimizes, and the logits for classification (so training accuracy needs no
    second forward pass). ``x`` and, for regression, ``y`` come standardized (``Trainer`` standardizes
    the training split once, not every batch), so the loss is in standardized units."""
    if task == "classification":
        logits = model.net(x)
        return F.cross_entropy(logits, y), logits
    if task == "regression":
        return F.mse_loss(model.net(x), y), None
    vae = model.net
    assert isinstance(vae, Vae)
    recon, kl = vae.elbo_terms(x)
    return (recon + vae.beta * kl).mean(), None


class LossModule(torch.nn.Module):
    """The training loss as a module, so DDP's forward sees every parameter the loss uses."""

    def __init__(self, model: StandardizedModel, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return batch_loss(self.model, x, y, self.task)


def l1_term(model: torch.nn.Module) -> torch.Tensor:
    return sum((p.abs().sum() for n, p in model.named_parameters() if n.endswith("weight")), torch.zeros(()))


class Trainer:
    """Trains one model on one split; ``fit`` runs the epochs, checkpointing after each."""

    def __init__(
        self,
        config: TrainConfig,
        model: StandardizedModel,
        splits: Splits,
        task: str,
        checkpoint_dir: Path,
        hooks: Hooks,
        dist: Distributed | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.task = task
        self.checkpoint_path = checkpoint_dir / CHECKPOINT_FILE
        self.checkpoint_writer = Rewriter(self.checkpoint_path)
        self.hooks = hooks
        self.dist = dist or Distributed()
        self.device = device or torch.device("cpu")
        self.model.to(self.device)
        self.trainable: torch.nn.Module = LossModule(model, task)
        if self.dist.size > 1:
            self.trainable = torch.nn.parallel.DistributedDataParallel(self.trainable)
        # one process calls the loss directly: the LossModule wrapper is there for DDP's forward hooks
        self.loss_of_batch: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]] = (
            self.trainable if self.dist.size > 1 else functools.partial(batch_loss, model, task=task)
        )
        self.optimizer = make_optimizer(config, self.trainable.parameters())
        self.progress = Progress()
        self._encoded_history: list[str] = []  # progress.history's records as JSON, for the checkpoint
        self.best_state: dict[str, torch.Tensor] | None = None
        # The training split is standardized here, once, instead of in every batch's forward pass: the
        # same arithmetic per element, so the same numbers, and two ops fewer per step.
        with torch.no_grad():
            self.x_train = model.standardize(torch.from_numpy(splits.x_train).to(self.device))
            if task == "classification":
                self.y_train = torch.from_numpy(splits.y_train).to(self.device, torch.long)
            elif task == "regression":
                targets = torch.from_numpy(splits.y_train).to(self.device, torch.float32)
                self.y_train = (targets.reshape(len(targets), -1) - model.output_mean) / model.output_std
            else:  # the VAE reconstructs its input; labels are not used
                self.y_train = torch.zeros(len(self.x_train), device=self.device)
        self.x_val = torch.from_numpy(splits.x_val).to(self.device)
        self.y_val = torch.from_numpy(splits.y_val).to(self.device)

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Model, optimizer, best weights and progress, as one safetensors file that replaces the last
        one atomically (a crash leaves the previous checkpoint).

        The tensors are the same from epoch to epoch (updated in place), which ``Rewriter`` uses to write
        them without encoding them again; the history goes in as each record's JSON, encoded once.
        """
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_state = self.optimizer.state_dict()
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"opt.{index}.{key}"] = value
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        progress = {k: v for k, v in vars(self.progress).items() if k != "history"}
        metadata = {
            "progress": json.dumps(progress),
            "history": "[" + ",".join(self._encoded_history) + "]",
            "param_groups": json.dumps(opt_state["param_groups"]),
        }
        self.checkpoint_writer.write(tensors, metadata)

    def load_checkpoint(self) -> bool:
        """Restore from the last epoch checkpoint; False when there is none."""
        if not self.checkpoint_path.exists():
            return False
        tensors = load_file(str(self.checkpoint_path))
        with safe_open(str(self.checkpoint_path), framework="pt") as handle:
            metadata = handle.metadata()
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state)
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                opt_state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(metadata["param_groups"])})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_state = best or None
        fields = json.loads(metadata["progress"])
        if "history" in metadata:  # checkpoints before the history had its own entry kept it in "progress"
            fields["history"] = json.loads(metadata["history"])
        self.progress = Progress(**fields)
        self._encoded_history = [json.dumps(record) for record in self.progress.history]
        return True

    # -- the loop ------------------------------------------------------------------------------
    def _stop_requested(self) -> bool:
        """True when this job is cancelled; in DDP every rank agrees (one tiny all_reduce)."""
        flag = self.hooks.cancelled()
        if self.dist.size == 1:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(tensor)
        return bool(tensor.item() > 0)

    def _shuffled_chunks(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's shuffled training split in chunks of whole batches, each gathered by one index op;
        a batch is then a contiguous slice of its chunk (not two gathers per step); chunks bound the extra
        memory to CHUNK_BYTES."""
        generator = torch.Generator().manual_seed(self.config.seed * 7919 + epoch)
        order = torch.randperm(len(self.x_train), generator=generator).to(self.device)
        row_bytes = max(1, self.x_train[:1].nbytes)
        rows = self.config.batch_size * max(1, CHUNK_BYTES // (row_bytes * self.config.batch_size))
        for start in range(0, len(order), rows):
            index = order[start : start + rows]
            yield self.x_train[index], self.y_train[index]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over this rank's share of the training split."""
        config, model, batch_size = self.config, self.model, self.config.batch_size
        rank, size = self.dist.rank, self.dist.size
        self.trainable.train()
        lr = learning_rate(config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        seed_epoch_randomness(config.seed * 1_000_003 + epoch * 101 + rank, self.device)
        # Per step, keep only what the step made (the loss and the logits, no extra arithmetic and no sync
        # to Python); the epoch's loss and accuracy are reduced per chunk and once at the end.
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        correct: list[torch.Tensor] = []
        for xs, ys in self._shuffled_chunks(epoch):
            logits_seen: list[torch.Tensor] = []
            targets_seen: list[torch.Tensor] = []
            for start in range(0, len(xs), batch_size):
                if self._stop_requested():
                    raise Cancelled
                x, y = xs[start : start + batch_size], ys[start : start + batch_size]
                if size > 1:
                    if len(x) < size:
                        continue  # a tail too short to give every rank a sample
                    x, y = x[rank::size], y[rank::size]
                loss, logits = self.loss_of_batch(x, y)
                objective = loss + config.l1_penalty * l1_term(model) if config.l1_penalty else loss
                self.optimizer.zero_grad(set_to_none=True)
                objective.backward()  # type: ignore[no-untyped-call]
                if config.grad_clip_norm:
                    torch.nn.utils.clip_grad_norm_(self.trainable.parameters(), config.grad_clip_norm)
                self.optimizer.step()
                losses.append(loss.detach())
                sizes.append(len(x))
                if logits is not None:
                    logits_seen.append(logits.detach())
                    targets_seen.append(y)
            if logits_seen:
                correct.append((torch.cat(logits_seen).argmax(1) == torch.cat(targets_seen)).sum())
        seen = sum(sizes)
        total_loss = (torch.stack(losses) * torch.tensor(sizes, device=self.device)).sum() if losses else 0.0
        metrics = {"loss": float(total_loss) / max(seen, 1)}
        if self.task == "classification":
            metrics["accuracy"] = float(sum(correct)) / max(seen, 1) if correct else 0.0
        return metrics

    def _improved(self, value: float) -> bool:
        best = self.progress.best_value
        if best is None:
            return True
        if self.config.early_stopping_metric in HIGHER_IS_BETTER:
            return value > best + self.config.min_delta
        return value < best - self.config.min_delta

    def fit(self) -> Progress:
        """Train the remaining epochs; returns the progress (history, early stop)."""
        try:
            while self.progress.epoch < self.config.epochs and not self.progress.stopped_early:
                self._run_epoch(self.progress.epoch + 1)
        finally:
            self.checkpoint_writer.close()
        if self.progress.stopped_early and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        if self.dist.rank == 0:  # the rank that writes the checkpoints (the others share its folder)
            spare_path(self.checkpoint_path).unlink(missing_ok=True)  # no more epochs: the spare can go
        return self.progress

    def _run_epoch(self, epoch: int) -> None:
        """Train, validate, track early stopping, checkpoint and report one epoch."""
        config = self.config
        started = time.perf_counter()
        train_metrics = self.train_epoch(epoch)
        validation = evaluate_tensors(self.model, self.x_val, self.y_val, self.task).metrics
        record = {
            "epoch": epoch,
            "train": train_metrics,
            "validation": validation,
            "learning_rate": learning_rate(config, epoch),
            "seconds": time.perf_counter() - started,
        }
        self.progress.epoch = epoch
        self.progress.history.append(record)
        self._encoded_history.append(json.dumps(record))
        if config.early_stopping_metric:
            self._track_best(validation[config.early_stopping_metric], epoch)
        if self.dist.rank == 0:
            self.save_checkpoint()
            self.hooks.on_epoch(record)
            if self.progress.stopped_early:
                self.hooks.on_message(
                    f"early stopping after epoch {epoch}: validation {config.early_stopping_metric} has not "
                    f"improved for {config.patience} epochs; keeping the weights of epoch {self.progress.best_epoch}"
                )

    def _track_best(self, value: float, epoch: int) -> None:
        """Keep the best epoch's weights; stop after ``patience`` epochs without improvement."""
        if self._improved(value):
            self.progress.best_value, self.progress.best_epoch = value, epoch
            self.progress.epochs_without_improvement = 0
            state = self.model.state_dict()
            if self.best_state is None or self.best_state.keys() != state.keys():
                self.best_state = {k: v.detach().cpu().clone() for k, v in state.items()}
            else:  # into the same tensors: the checkpoint writer then finds them where they were
                with torch.no_grad():
                    for name, tensor in state.items():
                        self.best_state[name].copy_(tensor)
        else:
            self.progress.epochs_without_improvement += 1
            if self.progress.epochs_without_improvement >= self.config.patience:
                self.progress.stopped_early = True


def seed_everything(seed: int) -> None:
    """Seed torch and numpy (model initialization happens right after)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
