"""One chunked driver for every stochastic optimisation loop of the suite (SVI, iterative BMR).

An algorithm is a pure ``step(state, batch, key, pool) -> (state, loss)`` (``state`` a pytree with a
``step`` counter, ``batch`` an ``(x, y)`` minibatch); :func:`run_steps` runs it:

* ``lax.scan`` over chunks of ``chunk_size`` steps, each chunk one compiled call (compiled ahead of time
  once per chunk length; compilation timed apart from training) with the state donated;
* step ``t`` draws its minibatch indices (with replacement) and its key from ``fold_in(key, t)`` on
  the device, so a run is a pure function of its key and resumes bit-for-bit;
* optional weight-noise pool per chunk (:func:`noise_pool`), data parallelism over several devices
  (``jax.sharding``: parameters replicated, each minibatch split), one host sync per chunk;
* after every chunk: the finiteness check, the progress bar, the ``callbacks`` (evaluation, pruning, ...)
  and a checkpoint every ``checkpoint_every`` chunks (``.npz`` of arrays and JSON: loading one runs no code).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

POOL_MAX = 2**20  # cap beyond the 2P minimum: 4 MB in float32 stays in cache (2²², 16 MB: SVI steps ≈ 1.2× slower on 784-400-400-10)
POOL_REUSE = 16  # the pool holds at least 1/16 of the normals the chunk's draws would take fresh


def noise_pool(key: jax.Array, step, size: int, draws: int) -> jax.Array | None:
    """The pool of standard normals for a chunk starting at ``step``: ``max(2·size, min(⌈draws·size/16⌉, 2²⁰))``
    of them (``size`` normals per draw of the guide, ``draws`` draws in the chunk); None when ``size`` is 0."""
    if not size:
        return None
    n = max(2 * size, min(-(-draws * size // POOL_REUSE), POOL_MAX))
    return jax.random.normal(jax.random.fold_in(key, step), (n,), jnp.result_type(float))


class Pool(NamedTuple):
    """A weight-noise pool per chunk: ``size`` normals per draw, ``draws`` draws per step, from ``key``."""

    key: jax.Array
    size: int
    draws: int = 1


def training_chunk(step: Callable, *, n_data: int, batch_size: int | None, pool: Pool | None = None,
                   sharding=None) -> Callable:
    """The jitted loop ``run(state, x, y, key, pool_key, length) -> (state, losses)`` over ``length`` (static) steps.

    Step ``t`` splits ``fold_in(key, t)`` into the minibatch key (``batch_size`` indices with replacement;
    the whole data when None) and the key handed to ``step``. ``pool``: its size and draws give the
    chunk's :func:`noise_pool`, drawn from ``pool_key``. ``sharding`` constrains each minibatch (data
    parallelism). The keys are arguments, not constants, so runs that differ only in their seed share
    one compiled program. The state is donated.
    """

    def body(state, _, x, y, key, noise):
        k_idx, k_step = jax.random.split(jax.random.fold_in(key, state.step))
        if batch_size is None:
            xb, yb = x, y
        else:
            idx = jax.random.randint(k_idx, (batch_size,), 0, n_data)
            xb, yb = x[idx], y[idx]
        if sharding is not None:
            xb, yb = jax.lax.with_sharding_constraint((xb, yb), sharding)
        return step(state, (xb, yb), k_step, noise)

    @functools.partial(jax.jit, static_argnums=5, donate_argnums=0)
    def run(state, x, y, key, pool_key, length):
        noise = None if pool is None else noise_pool(pool_key, state.step, pool.size, length * pool.draws)
        return jax.lax.scan(functools.partial(body, x=x, y=y, key=key, noise=noise), state, None, length=length)

    return run


_COMPILED: dict[str, Any] = {}  # compiled chunks by the hash of their lowered program (reused across calls)
_COMPILED_MAX = 64


def compile_chunk(run: Callable, *args) -> tuple[Any, bool]:
    """``(compiled program, reused)``: ``run`` lowered for ``args``, compiled once per distinct program in this process.

    Two calls with the same model, settings and shapes lower to the same program text, so the second
    call skips XLA's compilation (tracing and lowering still happen; JAX's persistent cache, when enabled,
    serves programs across processes the same way).
    """
    lowered = run.lower(*args)
    digest = hashlib.sha256(lowered.as_text().encode()).hexdigest()
    if digest in _COMPILED:
        return _COMPILED[digest], True
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[digest] = lowered.compile()
    return _COMPILED[digest], False


@dataclasses.dataclass
class Log:
    """What a run has recorded so far; callbacks read it and append to ``history``.

    ``losses``: per-step losses; ``history``: rows (dicts) the callbacks add; ``train_time``: seconds
    of compiled chunks (compilation excluded); ``compile_time``: seconds compiling; ``chunk_times``:
    ``(steps, seconds)`` of every chunk of this call; ``step``: steps done; ``start``: the step this call
    started from (after a resume); ``num_steps``: the run's total; ``reused``: chunk programs this call
    took from the in-process cache instead of compiling them.
    """

    step: int = 0
    start: int = 0
    num_steps: int = 0
    losses: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    history: list = dataclasses.field(default_factory=list)
    train_time: float = 0.0
    compile_time: float = 0.0
    chunk_times: list = dataclasses.field(default_factory=list)
    reused: int = 0

    @property
    def done(self) -> bool:
        """Whether the run has reached ``num_steps``."""
        return self.step >= self.num_steps

    @property
    def last_chunk(self) -> int:
        """Steps of the chunk that just ran."""
        return self.chunk_times[-1][0] if self.chunk_times else 0

    @property
    def steps_per_s(self) -> float:
        """Steps per second of training (compilation excluded) over this call's chunks."""
        steps = sum(n for n, _ in self.chunk_times)
        return steps / self.train_time if self.train_time > 0 else float("nan")


Callback = Callable[[Any, Log], Any]  # (state, log) -> new state or None


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, state, log: Log, meta: dict) -> None:
    """``state``'s leaves, the losses, history and ``meta`` as an ``.npz`` (written atomically)."""
    from sparsebnn.results import atomic_write

    leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(jax.device_get(state))]
    arrays = {f"leaf_{i}": v for i, v in enumerate(leaves)}
    arrays["losses"] = np.asarray(log.losses)
    arrays["json"] = np.array(json.dumps({"meta": meta, "history": log.history, "n_leaves": len(leaves)}))
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_checkpoint(path: str | os.PathLike, state, meta: dict) -> tuple[Any, Log]:
    """``(state, log)`` from a checkpoint of this run (ValueError when it was written by another run)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            info = json.loads(str(f["json"]))
            leaves = [f[f"leaf_{i}"] for i in range(info["n_leaves"])]
            losses = f["losses"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"checkpoint {path} is not a sparsebnn checkpoint ({e}); delete it to start afresh") from None
    fresh, tree = jax.tree_util.tree_flatten(state)
    same = len(leaves) == len(fresh) and all(np.shape(a) == np.shape(b) for a, b in zip(leaves, fresh))
    if not same or info["meta"] != meta:
        raise ValueError(f"checkpoint {path} does not match this run (model, seed or batch size differ)")
    restored = jax.tree_util.tree_unflatten(tree, [jnp.asarray(a, jnp.asarray(b).dtype) for a, b in zip(leaves, fresh)])
    return restored, Log(step=int(restored.step), losses=np.asarray(losses), history=list(info["history"]))


# ----------------------------------------------------------------------------- the driver


def run_steps(
    step: Callable,
    state,
    data: tuple,
    *,
    key: jax.Array,
    num_steps: int,
    batch_size: int | None,
    chunk_size: int = 500,
    pool: Pool | None = None,
    devices: Sequence | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    desc: str = "train",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    meta: dict | None = None,
) -> tuple[Any, Log]:
    """Run ``step`` until ``state.step == num_steps``; return the final state and the :class:`Log`.

    Args:
      step: the pure step ``(state, (xb, yb), key, pool) -> (state, loss)``.
      state: the initial state (donated chunk by chunk: pass arrays the caller does not keep).
      data: ``(x, y)`` training arrays (host or device).
      key: the key every step's minibatch and randomness derive from (``fold_in(key, t)``).
      num_steps: total steps (a resumed run continues from its checkpoint's step).
      batch_size: minibatch size (``None``: every step sees all the data).
      chunk_size: steps per compiled call (the last one may be shorter).
      pool: the weight-noise pool settings, or None.
      devices: devices to split each minibatch over (default all local devices).
      callbacks: called after every chunk as ``cb(state, log)``; a returned state replaces the current one.
      progress: show a progress bar; ``desc`` labels it.
      checkpoint: a file to save to every ``checkpoint_every`` chunks and at the end, and to resume
        from if it exists; ``meta`` (JSON-able) must match for a resume.
    """
    x, y = data
    n = len(x)
    devices = list(jax.local_devices() if devices is None else devices)
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    batched = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    meta = dict(meta or {})
    log = Log()
    if checkpoint is not None and Path(checkpoint).exists():
        state, log = load_checkpoint(checkpoint, state, meta)
    log.start, log.num_steps = log.step, num_steps
    x_dev, y_dev = jax.device_put((x, y), replicated)
    state = jax.device_put(state, replicated)
    run = training_chunk(step, n_data=n, batch_size=batch_size, pool=pool, sharding=batched if len(devices) > 1 else None)
    keys = jax.device_put((key, key if pool is None else pool.key), replicated)
    compiled: dict[int, Callable] = {}

    bar = tqdm(total=num_steps, initial=min(log.step, num_steps), unit="step", disable=not progress, desc=desc)
    chunks = 0
    try:
        while log.step < num_steps:
            length = min(chunk_size, num_steps - log.step)
            if length not in compiled:
                t0 = time.perf_counter()
                compiled[length], reused = compile_chunk(run, state, x_dev, y_dev, *keys, length)
                log.compile_time += time.perf_counter() - t0
                log.reused += reused
            t0 = time.perf_counter()
            state, losses = compiled[length](state, x_dev, y_dev, *keys)
            losses = np.asarray(losses)  # the one host sync per chunk
            dt = time.perf_counter() - t0
            log.train_time += dt
            log.chunk_times.append((length, dt))
            log.step += length
            log.losses = np.concatenate([log.losses, losses])
            chunks += 1
            if not np.all(np.isfinite(losses)):
                raise FloatingPointError(f"the loss became non-finite by step {log.step}; lower the learning rate")
            bar.update(length)
            for cb in callbacks:
                new = cb(state, log)
                if new is not None:
                    state = jax.device_put(new, replicated)
            if log.history:
                bar.set_postfix({k: f"{v:.4g}" for k, v in log.history[-1].items()
                                 if k != "step" and isinstance(v, (int, float))})
            if checkpoint is not None and (chunks % checkpoint_every == 0 or log.done):
                save_checkpoint(checkpoint, state, log, meta)
    finally:
        bar.close()
    return state, log


__all__ = ["POOL_MAX", "POOL_REUSE", "Callback", "Log", "Pool", "compile_chunk", "load_checkpoint", "noise_pool",
           "run_steps", "save_checkpoint", "training_chunk"]
