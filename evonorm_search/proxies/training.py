"""The proxy training loop: seeded, cosine-scheduled, resumable in stages, scored on a held-out split.

`ProxyTrainer` trains in stages (`train_until(step)`) so the search can score a short prefix of the
run for the quality rejection and then continue the same run to the full budget, paying once.
A non-finite loss stops training and marks the run diverged; evaluation still reports the accuracy
(non-finite logits count as wrong), so a diverged candidate scores low instead of crashing the search.

Batches are the same whether the data is held in memory or streamed: the trainer draws each batch's
positions itself (a seeded permutation per epoch, the last incomplete batch of an epoch dropped); held in
memory it indexes the tensors, streamed it hands the positions to a DataLoader as its batch sampler. The
DataLoader (and its worker processes) lives for one `train_until` call; positions it fetched ahead and
that were not trained on are handed to the next one first, so stages never change the order.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .config import TrainingConfig
from .data import LoadedData, ProxyData
from .streaming import shut_down


@dataclass(frozen=True)
class Metrics:
    """Accuracy and mean cross-entropy on the validation split after `steps` steps.

    `loss` is None when it is not finite; `seconds` counts training and evaluation so far.
    """

    accuracy: float
    loss: float | None
    steps: int
    seconds: float
    diverged: bool

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but PyTorch sees no CUDA device here")
    return torch.device(name)


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` intra-op threads (None: leave PyTorch's setting), restoring the old value after.

    Tiny proxies gain nothing from several threads, and on a busy machine extra threads only wait."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.momentum > 0,
        )
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, config: TrainingConfig) -> float:
    """Linear warmup, then cosine decay to zero at `config.steps` (or constant)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class TrainingCancelled(Exception):
    """Raised inside `train_until` when the trainer's `should_stop` says so."""


class _DrawnBatches:
    """The trainer's batch positions as a DataLoader's batch sampler: first those drawn before and not yet
    trained on, then new ones, each remembered until the trainer takes its batch (an endless stream)."""

    def __init__(self, trainer: ProxyTrainer):
        self.trainer = trainer

    def __iter__(self) -> Iterator[list[int]]:
        pending = self.trainer._pending
        yield from list(pending)
        while True:
            positions = self.trainer._next_indices().tolist()
            pending.append(positions)
            yield positions


class ProxyTrainer:
    """Trains `model` on `data` with `config`; batches are drawn from a generator seeded by `seed`.

    `should_stop`, checked before every step, lets the owner abandon the run (TrainingCancelled).
    """

    def __init__(
        self,
        model: nn.Module,
        data: LoadedData,
        config: TrainingConfig,
        *,
        seed: int,
        should_stop: Callable[[], bool] | None = None,
    ):
        self.should_stop = should_stop
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.data = data.to(self.device)
        self.config = config
        self.optimizer = make_optimizer(self.model, config)
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.batch_size = min(config.batch_size, data.train_size)
        self.step = 0
        self.diverged = False
        self.seconds = 0.0
        self._order = torch.empty(0, dtype=torch.long)
        self._cursor = 0
        # Streamed data: the DataLoader of the current `train_until`, and positions it fetched, not trained on.
        self._batches: Iterator[Any] | None = None
        self._pending: deque[list[int]] = deque()

    def _next_indices(self) -> torch.Tensor:
        """The positions of the next batch: a new seeded permutation whenever the epoch's rest is too short."""
        if self._cursor + self.batch_size > len(self._order):
            self._order = torch.randperm(self.data.train_size, generator=self.generator)
            self._cursor = 0
        idx = self._order[self._cursor : self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return idx

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.data
        if isinstance(data, ProxyData):
            idx = self._next_indices().to(self.device)
            return data.train_x[idx], data.train_y[idx]
        if self._batches is None:
            loader = data.loader(
                data.train, self.device, batch_sampler=_DrawnBatches(self), generator=self._loader_generator()
            )
            self._batches = iter(loader)
        x, y = next(self._batches)
        self._pending.popleft()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _loader_generator(self) -> torch.Generator:
        # The DataLoader draws its workers' base seed from this, never from the global random stream.
        return torch.Generator().manual_seed(self.seed + self.step)

    def close(self) -> None:
        """Stop the streamed training batches' worker processes (a later `train_until` starts new ones)."""
        batches, self._batches = self._batches, None
        shut_down(batches)

    def _train_step(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * lr_factor(self.step, self.config)
        x, y = self._next_batch()
        loss = nn.functional.cross_entropy(self.model(x), y)
        if not torch.isfinite(loss):
            self.diverged = True
            return
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            if not torch.isfinite(norm):
                self.diverged = True
                return
        self.optimizer.step()
        self.step += 1

    def train_until(self, step: int, *, release: bool = True) -> None:
        """Train up to `step` optimizer steps in total (capped at the configured steps). Streamed data's
        loader workers stop when it returns; `release=False` keeps them for the next call (then `close()`)."""
        self.model.train()
        start = time.perf_counter()
        target = min(step, self.config.steps)
        try:
            with intra_op_threads(self.config.threads):
                while self.step < target and not self.diverged:
                    if self.should_stop is not None and self.should_stop():
                        raise TrainingCancelled(f"training stopped at step {self.step} of {target}")
                    self._train_step()
        except BaseException:
            self.close()
            raise
        finally:
            self.seconds += time.perf_counter() - start
        if release:
            self.close()

    @torch.no_grad()
    def evaluate(self) -> Metrics:
        """Accuracy and loss on the validation split, in eval mode (running statistics for `batch` axes)."""
        start = time.perf_counter()
        self.model.eval()
        n = self.data.scored_size
        with intra_op_threads(self.config.threads):
            correct, loss_sum = self._score()
        self.seconds += time.perf_counter() - start
        loss = loss_sum / n
        return Metrics(
            accuracy=correct / n,
            loss=loss if math.isfinite(loss) else None,
            steps=self.step,
            seconds=round(self.seconds, 4),
            diverged=self.diverged,
        )

    def _scored_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The scored split in order, `eval_batch_size` examples at a time."""
        data, size = self.data, self.config.eval_batch_size
        if isinstance(data, ProxyData):
            for lo in range(0, len(data.val_y), size):
                yield data.val_x[lo : lo + size], data.val_y[lo : lo + size]
            return
        batches = iter(data.loader(data.scored, self.device, batch_size=size, shuffle=False))
        try:
            for x, y in batches:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        finally:
            shut_down(batches)

    def _score(self) -> tuple[int, float]:
        correct, loss_sum = 0, 0.0
        for x, y in self._scored_batches():
            logits = self.model(x)
            finite_rows = torch.isfinite(logits).all(dim=1)
            correct += int(((logits.argmax(dim=1) == y) & finite_rows).sum())
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        return correct, loss_sum


def train_proxy(model: nn.Module, data: LoadedData, config: TrainingConfig, *, seed: int) -> Metrics:
    """Train for `config.steps` steps and score on the validation split."""
    trainer = ProxyTrainer(model, data, config, seed=seed)
    trainer.train_until(config.steps)
    return trainer.evaluate()
