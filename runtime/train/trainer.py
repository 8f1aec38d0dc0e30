"""The training loop every stage shares: AdamW with warm-up and cosine decay, gradient clipping, an EMA of the
weights, a progress bar with the loss, and resumable checkpoints.

Determinism: step ``s`` draws its data from a generator seeded with ``(seed, s)``, so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would have seen.

Checkpoints are safetensors files like the model bundles: model, EMA and optimizer tensors, with the step
and the optimizer's hyper-parameters in the metadata.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from tqdm import tqdm


@dataclass
class StageConfig:
    steps: int
    learning_rate: float
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1   # cosine decay ends at this fraction of the peak learning rate
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: Optional[float] = 0.999
    checkpoint_every: int = 250

    def learning_rate_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return self.learning_rate * (self.final_lr_fraction + (1 - self.final_lr_fraction) * cosine)


# A step function gets (step, generator) and returns {"loss": scalar tensor, other metrics: floats or tensors}.
StepFn = Callable[[int, torch.Generator], dict]


class ExponentialMovingAverage:
    """Shadow copies of the trainable parameters: ``shadow = decay * shadow + (1 - decay) * parameter``."""

    def __init__(self, modules: dict[str, nn.Module], decay: float):
        self.decay = decay
        self.shadow = {f"{name}.{key}": p.detach().clone()
                       for name, module in modules.items() for key, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, modules: dict[str, nn.Module], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short warm-up so early weights do not linger
        for name, module in modules.items():
            for key, p in module.named_parameters():
                self.shadow[f"{name}.{key}"].lerp_(p.detach(), 1 - decay)

    @torch.no_grad()
    def copy_to(self, modules: dict[str, nn.Module]) -> None:
        for name, module in modules.items():
            for key, p in module.named_parameters():
                p.copy_(self.shadow[f"{name}.{key}"])


class TrainingStage:
    """Train ``modules`` by ``step_fn`` for ``config.steps`` steps, checkpointing into ``work_dir``.

    After :meth:`run`, the modules hold the EMA weights (or the raw weights without EMA), and
    ``work_dir/<name>.done.safetensors`` holds them too, so a second run of the same stage only loads them.
    """

    def __init__(self, name: str, modules: dict[str, nn.Module], config: StageConfig, work_dir: Path,
                 seed: int = 0, progress: bool = True):
        self.name, self.modules, self.config = name, modules, config
        self.work_dir, self.seed, self.progress = Path(work_dir), seed, progress
        self.parameters = [p for module in modules.values() for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.learning_rate, betas=(0.9, 0.99),
                                           weight_decay=config.weight_decay)
        self.ema = ExponentialMovingAverage(modules, config.ema_decay) if config.ema_decay else None
        self.step = 0
        self.history: list[dict] = []
        self.seconds = 0.0  # training time of this stage, across resumed runs

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / f"{self.name}.state.safetensors"

    @property
    def done_path(self) -> Path:
        return self.work_dir / f"{self.name}.done.safetensors"

    def run(self, step_fn: StepFn) -> list[dict]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.done_path.exists():
            self._load_weights(self.done_path)
            return self.history
        if self.checkpoint_path.exists():
            self._load_checkpoint()
        for module in self.modules.values():
            module.train()
        bar = tqdm(total=self.config.steps, initial=self.step, desc=self.name, disable=not self.progress,
                   dynamic_ncols=True, mininterval=1.0)
        while self.step < self.config.steps:
            started = time.perf_counter()
            metrics = self._one_step(step_fn)
            self.seconds += time.perf_counter() - started
            self.history.append(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.1e}")
            if self.step % self.config.checkpoint_every == 0 and self.step < self.config.steps:
                self._save_checkpoint()
        bar.close()
        if self.ema is not None:
            self.ema.copy_to(self.modules)
        for module in self.modules.values():
            module.eval()
        self._save_weights(self.done_path)
        self.checkpoint_path.unlink(missing_ok=True)
        return self.history

    def _one_step(self, step_fn: StepFn) -> dict:
        lr = self.config.learning_rate_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        outputs = step_fn(self.step, generator)
        loss = outputs["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.name}: the loss became {float(loss)} at step {self.step}; lower the "
                                     f"learning rate or resume from the last checkpoint")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.modules, self.step)
        self.step += 1
        metrics = {key: float(value.detach()) if torch.is_tensor(value) else float(value)
                   for key, value in outputs.items()}
        metrics.update(step=self.step, lr=lr, grad_norm=float(grad_norm))
        return metrics

    # --- checkpoints -------------------------------------------------------------------------------------------

    def _module_tensors(self) -> dict:
        return {f"model.{name}.{key}": t for name, module in self.modules.items()
                for key, t in module.state_dict().items()}

    def _save_checkpoint(self) -> None:
        tensors = self._module_tensors()
        if self.ema is not None:
            tensors.update({f"ema.{key}": t for key, t in self.ema.shadow.items()})
        optimizer_state = self.optimizer.state_dict()
        for index, state in optimizer_state["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        metadata = {"step": str(self.step), "param_groups": json.dumps(optimizer_state["param_groups"]),
                    "history": json.dumps(self.history), "seconds": f"{self.seconds:.1f}"}
        _save_atomically(tensors, metadata, self.checkpoint_path)

    def _load_checkpoint(self) -> None:
        from safetensors import safe_open

        with safe_open(str(self.checkpoint_path), "pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(self.checkpoint_path))
        self._load_modules(tensors, "model.")
        if self.ema is not None:
            for key in self.ema.shadow:
                self.ema.shadow[key].copy_(tensors[f"ema.{key}"])
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
        self.step = int(metadata["step"])
        self.history = json.loads(metadata["history"])
        self.seconds = float(metadata["seconds"])

    def _save_weights(self, path: Path) -> None:
        _save_atomically(self._module_tensors(), {"history": json.dumps(self.history), "seconds": f"{self.seconds:.1f}"},
                         path)

    def _load_weights(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata()
        self.history = json.loads(metadata["history"])
        self.seconds = float(metadata["seconds"])
        self._load_modules(load_file(str(path)), "model.")
        for module in self.modules.values():
            module.eval()

    def _load_modules(self, tensors: dict, prefix: str) -> None:
        for name, module in self.modules.items():
            start = f"{prefix}{name}."
            module.load_state_dict({k[len(start):]: v for k, v in tensors.items() if k.startswith(start)})


def _save_atomically(tensors: dict, metadata: dict, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(temporary), metadata=metadata)
    os.replace(temporary, path)
