"""The student (docs/method.md §3): input dropout -> batch norm without affine (the adapter) ->
linear head, trained from scratch on the labelled set every round.

Every random choice (initialisation, dropout masks, batch order) draws from a
``torch.Generator`` seeded by the caller, so training is bit-for-bit repeatable on CPU.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .geometry import as_tensor, pick_device
from .settings import StudentConfig  # declared without torch, for the command line

EVAL_CHUNK = 65536


class StudentNet(nn.Module):
    def __init__(self, dim: int, n_classes: int, dropout: float, generator: torch.Generator):
        super().__init__()
        self.dropout = dropout
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.head = nn.Linear(dim, n_classes)
        # nn.Linear's default init, drawn from our generator instead of the global one.
        nn.init.kaiming_uniform_(self.head.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(self.head.bias, -bound, bound, generator=generator)

    def drop(self, h: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Inverted input dropout with an explicit generator."""
        if self.dropout <= 0:
            return h
        # in place on the uniform draws: the mask becomes 1.0 / 0.0 floats, then the output;
        # the same values as (h * (u >= p)) / (1 - p) with one (N, D) buffer instead of four
        mask = torch.rand(h.shape, generator=generator, device=h.device).ge_(self.dropout)
        return mask.mul_(h).div_(1.0 - self.dropout)

    def adapter(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """a(h): batch norm of (optionally dropped-out) features; dropout only with a generator."""
        return self.norm(self.drop(h, generator) if generator is not None else h)

    def forward(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.head(self.adapter(h, generator))


@dataclass
class Student:
    """A trained student. Inference methods take features (N, d_S) and work in chunks."""

    net: StudentNet
    device: torch.device
    epochs: int
    train_loss: float
    config: StudentConfig  # how it was trained, for strategies that train a student of their own

    @torch.no_grad()
    def _map(self, features: np.ndarray, fn) -> np.ndarray:
        self.net.eval()
        out = [fn(as_tensor(features[s:s + EVAL_CHUNK], self.device)).cpu().numpy()
               for s in range(0, len(features), EVAL_CHUNK)]
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, K) float32."""
        return self._map(features, self.net)

    def log_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, K) float64 log p_S(y|x)."""
        return self._map(features, lambda h: F.log_softmax(self.net(h).double(), dim=1))

    def proba(self, features: np.ndarray) -> np.ndarray:
        """(N, K) float32 p_S(y|x)."""
        return self._map(features, lambda h: F.softmax(self.net(h), dim=1))

    def embed(self, features: np.ndarray) -> np.ndarray:
        """The adapter output a(h(x)) (N, d_S), the 'student embedding'."""
        return self._map(features, self.net.adapter)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self._map(features, lambda h: self.net(h).argmax(1))

    @torch.no_grad()
    def mc_proba(self, features: np.ndarray, passes: int, seed: int) -> np.ndarray:
        """Monte-Carlo dropout: (passes, N, K) float32 with dropout active, batch norm frozen."""
        self.net.eval()
        gen = torch.Generator(device=self.device).manual_seed(seed)
        h = as_tensor(features, self.device)
        return torch.stack([F.softmax(self.net(h, gen), dim=1) for _ in range(passes)]).cpu().numpy()


@contextmanager
def _one_torch_thread():
    """torch's CPU batch norm sums batch statistics per thread, so a student trained on 2
    threads differs in the last bits from one trained on 1 (and near ties downstream flip):
    training on one thread keeps every result independent of the thread count."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def train_student(features: np.ndarray, labels: np.ndarray, n_classes: int,
                  config: StudentConfig, seed: int) -> Student:
    """Train a fresh student on labelled features (n, d_S) and labels (n,).

    AdamW; early stopping on the mean training loss of each epoch (patience, min_delta);
    the weights of the epoch with the lowest training loss are returned. On one CPU thread
    (see ``_one_torch_thread``); the labelled set is small, so this costs little.
    """
    with _one_torch_thread():
        return _train(features, labels, n_classes, config, seed)


def _train(features: np.ndarray, labels: np.ndarray, n_classes: int, config: StudentConfig,
           seed: int) -> Student:
    device = pick_device(config.device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    net = StudentNet(features.shape[1], n_classes, config.dropout, gen).to(device)
    drop_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
    x = as_tensor(features, device)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(y)
    starts = list(range(0, n, config.batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:  # batch norm cannot train on a single sample
        starts.pop()
    best_loss, best_state, stale, epochs = math.inf, None, 0, 0
    reference = math.inf
    for epoch in range(config.max_epochs):
        net.train()
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for s in starts:
            idx = order[s:s + config.batch_size] if s != starts[-1] else order[s:]
            loss = F.cross_entropy(net(x[idx], drop_gen), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        epoch_loss = total / n
        epochs = epoch + 1
        if epoch_loss < best_loss:
            best_loss, best_state = epoch_loss, copy.deepcopy(net.state_dict())
        if epoch_loss < reference - config.min_delta:
            reference, stale = epoch_loss, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return Student(net=net, device=device, epochs=epochs, train_loss=best_loss, config=config)
