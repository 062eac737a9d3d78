"""The training loop every network here shares: SGD/AdamW with a poly schedule, a progress bar,
the full state saved to `<out>.partial` after each epoch (a rerun with the same settings resumes
from it, and ends with the weights of an uninterrupted run), and a loss that cannot improve
stopped with an error that keeps the last good epoch: NaN/inf, or above its starting value for
PATIENCE epochs in a row. Each batch's forward pass and loss run in the stage's mixed precision
(pipeline/core/precision.py), with the loss scaled for float16.

The `.partial` is written to a temporary name and renamed, so a kill mid-save leaves the last
good state. It records `settings`, which callers make the identity of everything the run depends
on (config, seed, the split and its files, the input artifact's digest); a state saved under
other settings is moved aside (`.stale-<time>`), an unreadable one too (`.corrupt-<time>`), each
with one log line, and training starts from scratch."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.core.precision import autocast, grad_scaler, prepare_model
from pipeline.core.store import differences, log, move_aside

# Epochs in a row with a mean loss above the first iteration's before training is stopped.
PATIENCE = 3


class TrainingDiverged(RuntimeError):
    pass


def poly_lr(base: float, it: int, max_it: int, power: float) -> float:
    return base * (1 - it / max_it) ** power


def make_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """Parameter groups come from model.param_groups(), each with an lr multiplier."""
    groups = [{**g, "lr": cfg["lr"] * g["lr_mult"]} for g in model.param_groups()]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    return torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


STATE_KEYS = {"model", "optimizer", "epoch", "history", "settings", "start_loss", "above"}


def _resume_state(partial: Path, settings: dict):
    """The saved state if it was trained under exactly `settings`; otherwise it is moved aside."""
    if not partial.exists():
        return None
    try:
        state = torch.load(partial, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not STATE_KEYS <= set(state):
            raise ValueError(f"not a training state of this version (entries {sorted(state)[:8]})"
                             if isinstance(state, dict) else "not a training state")
    except Exception as exc:  # truncated by a kill or a full disk, or foreign
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log(f"training state {partial} cannot be loaded ({reason}); moved it to "
            f"{move_aside(str(partial), 'corrupt')}; training starts from scratch")
        return None
    if state["settings"] != settings:
        changed = "; ".join(differences(state["settings"], settings))
        log(f"training state {partial} was saved for other inputs or settings ({changed}); moved it to "
            f"{move_aside(str(partial), 'stale')}; training starts from scratch")
        return None
    return state


def _save_state(partial: Path, state: dict) -> None:
    """Write to a temporary name, sync, rename: a kill or a full disk mid-save keeps the last state."""
    tmp = partial.with_name(partial.name + ".tmp")
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, partial)


def seed_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Each epoch's shuffle, worker seeds and dropout come from (seed, epoch) alone, not from the
    epochs before it: an epoch resumed from a `.partial` state draws what it would have drawn."""
    epoch_seed = seed * 100_003 + epoch   # one value per (seed, epoch) below 100,003 epochs
    torch.manual_seed(epoch_seed)
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed)


def fit(model: torch.nn.Module, loader: DataLoader, batch_loss: Callable, cfg: dict, partial: Path,
        settings: dict, device, name: str, on_epoch: Callable[[int], None] = lambda epoch: None,
        seed: int = 0) -> list[dict]:
    """Train for cfg['epochs'] and return the per-epoch loss history.

    batch_loss(model, batch, device) -> scalar loss; it runs inside autocast(device) and casts the
    network's output to float32 before its loss (pipeline/core/precision.py). `settings` must identify the run: a partial
    state written under other settings is not resumed. `name` is the config section, for messages.
    on_epoch(epoch) runs before each epoch (e.g. to reseed the augmentation); `seed` with the epoch
    seeds the loader's shuffle and torch's global generator (seed_epoch)."""
    if len(loader) == 0:
        raise ValueError(f"{name}: the training split has {len(loader.dataset)} images, fewer than "
                         f"{name}.batch_size = {cfg['batch_size']}")
    prepare_model(model, device)   # before the optimizer's state is loaded: it follows its parameters' device
    optimizer = make_optimizer(model, cfg)
    scaler = grad_scaler(device)
    history, start_epoch = [], 0
    start_loss, above = None, 0   # the first iteration's loss; epochs in a row above it
    state = _resume_state(partial, settings)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch = json.loads(state["history"]), state["epoch"]
        start_loss, above = state["start_loss"], state["above"]
        if scaler.is_enabled() and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        print(f"resuming {name} training from {partial} after epoch {start_epoch}")

    max_it = cfg["epochs"] * len(loader)
    for epoch in range(start_epoch, cfg["epochs"]):
        model.train()
        seed_epoch(loader, seed, epoch)
        on_epoch(epoch)
        losses = []
        bar = tqdm(loader, desc=f"{name} epoch {epoch + 1}/{cfg['epochs']}")
        for step, batch in enumerate(bar):
            it = epoch * len(loader) + step
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(cfg["lr"], it, max_it, cfg["poly_power"]) * group["lr_mult"]
            with autocast(device):
                loss = batch_loss(model, batch, device)
            if not math.isfinite(loss.item()):
                kept = f"the last good checkpoint (after epoch {epoch}) is kept at {partial}" if partial.exists() \
                    else "no epoch had completed, so no checkpoint was kept"
                raise TrainingDiverged(f"{name} loss became {loss.item()} at epoch {epoch + 1}, iteration "
                                       f"{step + 1}; lower {name}.lr (now {cfg['lr']}). {kept}")
            if start_loss is None:
                start_loss = loss.item()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
        above = above + 1 if history[-1]["loss"] > start_loss else 0
        _save_state(partial, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                              "history": json.dumps(history), "settings": settings, "start_loss": start_loss,
                              "above": above, **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {})})
        if above >= PATIENCE:
            raise TrainingDiverged(
                f"{name} mean loss has stayed above its starting value {start_loss:.4g} for {above} epochs "
                f"(epoch {epoch + 1}: {history[-1]['loss']:.4g}): training is not learning; lower {name}.lr "
                f"(now {cfg['lr']}) or check its labels. The state after epoch {epoch + 1} is kept at {partial}")
    return history
