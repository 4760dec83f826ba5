"""The one training core: every model of the project (AutoEncoder, D-GEX, Concrete AE,
PERSIST gates) trains here.

A model brings three things: an nnx module, an `Objective` (the loss of one batch; a
frozen dataclass, so it hashes by value) and an optax optimizer (built once per setting by
a cached builder, so it hashes by identity). `fit` then runs, epoch after epoch:

- one jitted dispatch per epoch: a `lax.scan` of the train step over the epoch's batches,
  gathered from device-resident data split over the mesh's 'batch' axis (parameters and
  optimizer state replicated and donated), or, for a split that is not resident (a stream
  of a GCTX's rows, landmark.data.splits), the same step per batch with the next batch
  prefetched by a background thread;
- the caller's evaluation hook, every `Loop.eval_every` epochs and at the end;
- D-GEX-style rules between epochs: keep the parameters of the best epoch of a metric
  (`select_best`), set the learning rate from the history (`learning_rate_rule`);
- a NaN/inf stop (NumericalError naming `Loop.diverged_field`), TensorBoard scalars, a
  progress line with rate and ETA, and orbax checkpoints (landmark.training.checkpointing)
  that a rerun resumes from exactly, refusing those saved under another run identity.

Every random draw is a function of (key, epoch, step), never of how many draws came
before: epoch e's batches come from fold_in(shuffle key, e) and global step s (0-based)
gets fold_in(step key, s), so a resumed run equals an uninterrupted one bit for bit. The
jitted epoch is one module-level function whose static arguments (graph, objective,
optimizer, shapes, mesh) compare by value, so refitting the same shapes never recompiles.
"""

import dataclasses
import datetime
import functools
import os
import time
from typing import Any, Callable, Mapping, Protocol

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
import optax

from landmark import errors
from landmark import run_identity
from landmark.data import splits
from landmark.training import checkpointing
from landmark.training import metric_writing
from landmark.training import sharding

# Tags of the per-epoch TensorBoard scalars the core writes; also keys of the history.
TRAIN_LOSS = 'train/loss'
LEARNING_RATE = 'train/learning_rate'             # at the epoch's first step
SAMPLES_PER_SEC = 'train/samples_per_sec'
DATA_WAIT_FRACTION = 'train/data_wait_fraction'   # streamed runs only
EPOCH = 'epoch'

DESCRIPTIONS = {   # what each tag the core writes means, with its unit (TensorBoard's 'tags' text)
    TRAIN_LOSS: "the model's training objective, mean over the epoch's samples (its own units)",
    LEARNING_RATE: "the optimizer's learning rate at the epoch's first step",
    SAMPLES_PER_SEC: 'training throughput, samples per second of wall time',
    DATA_WAIT_FRACTION: "fraction of the epoch's wall time spent waiting for streamed data (0-1)",
}

# Sub-keys of a run's key (its parameters are drawn from fold_in(key, INIT_STREAM)).
INIT_STREAM, SHUFFLE_STREAM, STEP_STREAM = 0, 1, 2


class Objective(Protocol):
  """The loss of one batch; hashable by value (a frozen dataclass) so the epoch compiles once.

  `batch` maps the data's names to the batch's rows; `mask` is 1 for real rows and 0 for
  the padding of the last batch; `key` is the step's own random key (dropout, Gumbel
  noise) and `step` the 0-based global step (for schedules such as a temperature).
  """

  def __call__(self, model: nnx.Module, batch: Mapping[str, jax.Array], mask: jax.Array,
               key: jax.Array, step: jax.Array) -> jax.Array:
    ...


def masked_mean(per_row: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of `per_row` over the real rows (mask 1): a padded batch's loss, as in Keras."""
  return jnp.sum(per_row * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@dataclasses.dataclass(frozen=True)
class Loop:
  """How long and how observably a model trains: the model-independent settings of `fit`."""
  epochs: int
  batch_size: int
  name: str = 'train'            # names the model in log lines
  diverged_field: str = 'config.train.learning_rate'   # blamed when the loss turns NaN
  eval_every: int = 1
  log_every: int = 1
  checkpoint_every: int = 1      # 0: no checkpoints (TensorBoard only)
  keep_checkpoints: int = 1


@dataclasses.dataclass
class TrainState:
  """What a run carries from epoch to epoch: the model split into its graph, its trained
  parameters (a pure dict) and the rest (e.g. dropout RNG state), the optimizer state and
  the run's key (as key data, so orbax can save it)."""
  graphdef: nnx.GraphDef
  params: dict
  rest: nnx.State
  opt_state: Any
  rng: jax.Array

  def model(self, params: dict | None = None) -> nnx.Module:
    """The module with `params` (default: the current ones)."""
    return nnx.merge(self.graphdef, self.params if params is None else params, self.rest)


def new_state(model: nnx.Module, optimizer: optax.GradientTransformation, key: jax.Array,
              mesh: Mesh) -> TrainState:
  """A fresh state of `model` (in training mode) with its optimizer, replicated over `mesh`."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = nnx.to_pure_dict(params)
  placed = sharding.replicate(mesh, {'params': params, 'opt_state': optimizer.init(params),
                                     'rng': jax.random.key_data(key)})
  return TrainState(graphdef, placed['params'], rest, placed['opt_state'], placed['rng'])


def device_data(data: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Host arrays with the same number of rows, zero-padded to a multiple of the device count
  and split over the mesh's 'batch' axis: the device-resident training set of `train_epoch`."""
  return {name: sharding.put_batch(mesh, sharding.pad_rows(np.asarray(array, np.float32),
                                                           mesh.size))
          for name, array in data.items()}


@functools.partial(jax.jit, static_argnums=(1, 2))
def epoch_batches(key: jax.Array, n_samples: int, batch_size: int,
                  epoch: int) -> tuple[jax.Array, jax.Array]:
  """Sample indices (steps, batch_size) and row mask of one epoch, from (key, epoch).

  Every sample once, in a permutation drawn from fold_in(key, epoch); the last batch is
  padded (with sample 0, masked out) so every step has the same shapes.
  """
  steps = -(-n_samples // batch_size)
  order = jax.random.permutation(jax.random.fold_in(key, epoch), n_samples)
  padded = jnp.zeros(steps * batch_size, order.dtype).at[:n_samples].set(order)
  mask = jnp.arange(steps * batch_size) < n_samples
  return padded.reshape(steps, batch_size), mask.reshape(steps, batch_size).astype(jnp.float32)


def _train_step(graphdef, objective, optimizer, params, rest, opt_state, batch, mask, key, step):
  """One optimizer step on `batch`: (params, opt_state, loss)."""

  def batch_loss(params):
    return objective(nnx.merge(graphdef, params, rest), batch, mask, key, step)

  loss, grads = jax.value_and_grad(batch_loss)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def _scanned_epoch(params, opt_state, rest, data, epoch, rng, *, graphdef, objective, optimizer,
                   batch_size, n_rows, mesh):
  """The epoch `epoch` (1-based) over device-resident `data`: (params, opt_state, mean loss)."""
  split, whole = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  key = jax.random.wrap_key_data(rng)
  indices, mask = epoch_batches(jax.random.fold_in(key, SHUFFLE_STREAM), n_rows, batch_size, epoch)
  step_key = jax.random.fold_in(key, STEP_STREAM)

  def body(carry, scanned):
    params, opt_state, step = carry
    index, batch_mask = scanned
    batch = {name: jax.lax.with_sharding_constraint(array[index], split)
             for name, array in data.items()}
    params, opt_state, loss = _train_step(
        graphdef, objective, optimizer, params, rest, opt_state, batch,
        jax.lax.with_sharding_constraint(batch_mask, split), jax.random.fold_in(step_key, step),
        step)
    return (params, opt_state, step + 1), loss

  first_step = (epoch - 1) * indices.shape[0]
  (params, opt_state, _), losses = jax.lax.scan(body, (params, opt_state, first_step),
                                                (indices, mask))
  params, opt_state = jax.lax.with_sharding_constraint((params, opt_state), whole)
  return params, opt_state, jnp.sum(losses * mask.sum(axis=1)) / n_rows


def _streamed_step(params, opt_state, rest, x, mask, rng, step, *, graphdef, objective,
                   optimizer, mesh):
  """Global step `step` on one streamed batch `x`: (params, opt_state, loss)."""
  split, whole = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  step_key = jax.random.fold_in(jax.random.wrap_key_data(rng), STEP_STREAM)
  params, opt_state, loss = _train_step(
      graphdef, objective, optimizer, params, rest, opt_state,
      {'x': jax.lax.with_sharding_constraint(x, split)},
      jax.lax.with_sharding_constraint(mask, split), jax.random.fold_in(step_key, step), step)
  params, opt_state = jax.lax.with_sharding_constraint((params, opt_state), whole)
  return params, opt_state, loss


def compiler_options() -> dict[str, bool] | None:
  """XLA:CPU options for a jitted loop that updates donated buffers (other backends need none).

  Region-based copy insertion lets the scanned step update the donated kernels in place;
  without it XLA:CPU copies both 22,268 x 500 kernels every step (measured with
  experiments/benchmark.py).
  """
  if jax.default_backend() != 'cpu':
    return None
  return {'xla_cpu_copy_insertion_use_region_analysis': True}


@functools.cache
def scanned_epoch() -> Callable[..., tuple[dict, Any, jax.Array]]:
  """The jitted, donating epoch over device-resident data (built on first use: no backend
  query at import). Its cache holds one executable per (graph, objective, optimizer, shapes)."""
  return jax.jit(_scanned_epoch, donate_argnums=(0, 1), compiler_options=compiler_options(),
                 static_argnames=('graphdef', 'objective', 'optimizer', 'batch_size', 'n_rows',
                                  'mesh'))


@functools.cache
def _streamed_step_fn():
  return jax.jit(_streamed_step, donate_argnums=(0, 1), compiler_options=compiler_options(),
                 static_argnames=('graphdef', 'objective', 'optimizer', 'mesh'))


def train_epoch(state: TrainState, objective: Objective, optimizer: optax.GradientTransformation,
                data: Mapping[str, jax.Array], epoch: int, batch_size: int, n_rows: int,
                mesh: Mesh) -> tuple[TrainState, jax.Array]:
  """Runs epoch `epoch` (1-based) of the first `n_rows` rows of `device_data` output `data`.

  Returns the updated state (the old one's parameters and optimizer state are donated)
  and the epoch's training loss, the mean over samples of the per-batch losses.
  """
  params, opt_state, loss = scanned_epoch()(
      state.params, state.opt_state, state.rest, data, epoch, state.rng, graphdef=state.graphdef,
      objective=objective, optimizer=optimizer, batch_size=batch_size, n_rows=n_rows, mesh=mesh)
  return dataclasses.replace(state, params=params, opt_state=opt_state), loss


def _stream_epoch(state, objective, optimizer, stream, epoch, batch_size, seed, mesh):
  """Epoch `epoch` over the prefetched batches of a streamed split (SampleStream.batches);
  (state, {loss, data wait fraction})."""
  started = time.perf_counter()
  steps = stream.steps_per_epoch(batch_size)
  n_rows = stream.shape[0]
  batch_rows = np.minimum(batch_size, n_rows - batch_size * np.arange(steps))
  batches = stream.batches(seed, epoch, batch_size,
                           lambda batch: tuple(sharding.put_batch(mesh, a) for a in batch))
  step_fn = _streamed_step_fn()
  params, opt_state, losses = state.params, state.opt_state, []
  for step, (x, mask) in enumerate(batches, start=(epoch - 1) * steps):
    if losses:      # one step in flight: the host never runs further ahead
      losses[-1].block_until_ready()
    params, opt_state, loss = step_fn(params, opt_state, state.rest, x, mask, state.rng,
                                      np.int32(step), graphdef=state.graphdef,
                                      objective=objective, optimizer=optimizer, mesh=mesh)
    losses.append(loss)
  loss = np.sum(np.asarray(jax.device_get(losses), np.float64) * batch_rows) / n_rows
  return (dataclasses.replace(state, params=params, opt_state=opt_state),
          {TRAIN_LOSS: loss, DATA_WAIT_FRACTION:
           batches.wait_seconds / (time.perf_counter() - started)})


@functools.lru_cache(maxsize=32)
def adam_with_part_rate(learning_rate: float, part: str, part_learning_rate: float
                        ) -> optax.GradientTransformation:
  """Adam at `part_learning_rate` for the parameters under the model's attribute `part` (a
  selection layer's logits, which must travel far within one fit) and at `learning_rate`
  for the others; the core sets and logs 'learning_rate'. Cached, so that one setting is
  one optimizer object and reuses its compiled epoch."""
  def labels(params):
    return {name: jax.tree.map(lambda _: 'part' if name == part else 'rest', tree)
            for name, tree in params.items()}

  def two_rates(learning_rate, part_learning_rate):
    return optax.multi_transform({'rest': optax.adam(learning_rate),
                                  'part': optax.adam(part_learning_rate)}, labels)

  return optax.inject_hyperparams(two_rates)(learning_rate=learning_rate,
                                             part_learning_rate=part_learning_rate)


def set_learning_rate(opt_state: optax.InjectStatefulHyperparamsState,
                      learning_rate: float) -> optax.InjectStatefulHyperparamsState:
  """`opt_state` of an `optax.inject_hyperparams` optimizer with a new learning rate.

  Same dtype, shape and sharding as the current value: no recompilation, and in a
  multi-host run a global array that can be checkpointed.
  """
  current = opt_state.hyperparams['learning_rate']
  hyperparams = {**opt_state.hyperparams, 'learning_rate': jax.device_put(
      np.asarray(learning_rate, current.dtype), current.sharding)}
  return opt_state._replace(hyperparams=hyperparams)


@dataclasses.dataclass
class Result:
  """A finished run: the final parameters, those of the best epoch (when selected), the
  per-epoch history ({tag: [values]}, with 'epoch') and the 1-based best epoch."""
  state: TrainState
  best_params: dict | None
  history: dict[str, list]
  best_epoch: int | None

  def model(self) -> nnx.Module:
    """The trained module: best-epoch parameters when a metric selected them, else final."""
    return self.state.model(self.best_params)


def fit(model: nnx.Module, objective: Objective, optimizer: optax.GradientTransformation,
        data: Mapping[str, np.ndarray] | splits.Split, loop: Loop, *, seed: int,
        mesh: Mesh, workdir: str | None = None, identity: dict | None = None,
        evaluate: Callable[[dict], Mapping[str, float]] | None = None,
        select_best: str | None = None,
        learning_rate_rule: Callable[[dict[str, list]], float] | None = None,
        config_text: str | None = None, descriptions: Mapping[str, str] | None = None) -> Result:
  """Trains `model` (in training mode) on `data` for `loop.epochs` epochs, or resumes.

  `data` maps names to host arrays of equal length, put on the devices once, or is a split
  that is not `resident` (Split.training_data of a stream: its `batches` arrive as
  batch['x'], one step each). The run's keys derive from `seed` (the caller draws the
  initial parameters from fold_in(key(seed), INIT_STREAM)). `evaluate(params)` returns
  held-out metrics (tags such as 'eval/mae'); `select_best` names one of them to minimise,
  whose best epoch's parameters are kept (and saved, for exact resumption);
  `learning_rate_rule(history)` sets the learning rate of the next epoch (the optimizer
  must be `optax.inject_hyperparams`).

  With a `workdir`, checkpoints go to `<workdir>/checkpoints` (each with `identity`; one
  saved under another is refused with a RunIdentityError) and TensorBoard events to
  `<workdir>/tensorboard`: the curves and, at a fresh start, the run's `config_text` and a
  table of what each tag means (DESCRIPTIONS and the model's `descriptions` of its
  evaluation tags). `loop.checkpoint_every` 0 writes TensorBoard events only.
  """
  streamed = not getattr(data, 'resident', True)   # a mapping of host arrays is resident
  n_rows = data.shape[0] if streamed else len(next(iter(data.values())))
  sharding.check_divisible(mesh, loop.batch_size, f'{loop.name} batch size')
  state = new_state(model, optimizer, jax.random.key(seed), mesh)
  best = state.params if select_best else None
  start_epoch, history, manager = 0, {EPOCH: []}, None
  if workdir is not None and loop.checkpoint_every:
    manager = checkpointing.make_manager(os.path.join(workdir, 'checkpoints'),
                                         save_every=loop.checkpoint_every,
                                         keep=loop.keep_checkpoints)
    start_epoch, state, best, history = _resume(manager, state, best, history, identity, loop)
  if start_epoch < loop.epochs:
    if not streamed:
      data = device_data(data, mesh)
    writer = (metric_writing.MetricWriter(os.path.join(workdir, 'tensorboard'),
                                          purge_step=start_epoch + 1) if workdir else None)
    if writer and not start_epoch:
      _describe_run(writer, config_text, {**DESCRIPTIONS, **(descriptions or {})})
    epoch_seconds = []
    try:
      for epoch in range(start_epoch + 1, loop.epochs + 1):
        started = time.perf_counter()
        learning_rate = float(state.opt_state.hyperparams['learning_rate'])   # before donation
        if streamed:
          state, metrics = _stream_epoch(state, objective, optimizer, data, epoch,
                                         loop.batch_size, seed, mesh)
        else:
          state, loss = train_epoch(state, objective, optimizer, data, epoch, loop.batch_size,
                                    n_rows, mesh)
          metrics = {TRAIN_LOSS: loss}
        metrics = {**jax.device_get(metrics), LEARNING_RATE: learning_rate}
        _stop_if_diverged(float(metrics[TRAIN_LOSS]), epoch, history, loop, manager)
        if evaluate is not None and (epoch % loop.eval_every == 0 or epoch == loop.epochs):
          metrics.update(jax.device_get(evaluate(state.params)))
        epoch_seconds.append(time.perf_counter() - started)
        metrics = {tag: float(value) for tag, value in metrics.items()}
        metrics[SAMPLES_PER_SEC] = n_rows / epoch_seconds[-1]
        history[EPOCH].append(epoch)
        for tag, value in metrics.items():
          history.setdefault(tag, []).append(value)
        if select_best and _is_best(history, select_best):
          best = jax.tree.map(jnp.copy, state.params)
        if learning_rate_rule is not None:
          state = dataclasses.replace(state, opt_state=set_learning_rate(
              state.opt_state, learning_rate_rule(history)))
        if epoch % loop.log_every == 0 or epoch == loop.epochs:
          _log_epoch(loop, epoch, metrics, np.median(epoch_seconds) * (loop.epochs - epoch))
        if writer:
          writer.write_scalars(epoch, metrics)
        if manager is not None and checkpointing.save(
            manager, epoch, _saved(state, best), {'history': history, 'identity': identity},
            force=epoch == loop.epochs) and writer:
          writer.flush()   # the curves on disk reach as far as the checkpoints
    finally:   # a crash keeps the curves of the epochs it ran
      if writer:
        writer.close()
  if manager is not None:
    manager.close()
  best_epoch = None
  if select_best:
    best_epoch = int(history[EPOCH][int(np.nanargmin(np.asarray(history[select_best])))])
  return Result(state, best, history, best_epoch)


def _describe_run(writer, config_text, descriptions):
  """The run's config and the meaning of its tags, as TensorBoard text at step 0."""
  if config_text:
    writer.write_text(0, 'config', f'```\n{config_text}\n```')
  rows = '\n'.join(f'| `{tag}` | {meaning} |' for tag, meaning in descriptions.items())
  writer.write_text(0, 'tags', f'| tag | meaning (unit) |\n|---|---|\n{rows}')


def _saved(state, best):
  """The pytree a checkpoint holds: everything exact resumption needs."""
  saved = {'params': state.params, 'opt_state': state.opt_state, 'rng': state.rng}
  if best is not None:
    saved['best'] = best
  return saved


def _resume(manager, state, best, history, identity, loop):
  """(start epoch, state, best params, history) from the newest trusted checkpoint, or the
  fresh ones given when there is none; refuses a checkpoint saved under another identity."""
  restored = checkpointing.restore(manager, checkpointing.abstract(_saved(state, best)))
  if not restored:
    return 0, state, best, history
  epoch, saved, metadata = restored
  recorded = metadata.get('identity')
  if not run_identity.matches(recorded, identity):
    changed = (run_identity.differences(recorded, identity)[0] if recorded and identity
               else 'no run identity on one side')
    raise errors.RunIdentityError(manager.directory, 'these checkpoints were saved under another '
                                  f'config or other data ({changed}); rerun with --overwrite')
  logging.info('%s: restored the checkpoint of epoch %d from %s.', loop.name, epoch,
               manager.directory)
  state = dataclasses.replace(state, params=saved['params'], opt_state=saved['opt_state'],
                              rng=saved['rng'])
  return epoch, state, saved.get('best'), metadata['history']


def _is_best(history, tag):
  """Whether the latest epoch's `tag` is the lowest so far (the first wins ties)."""
  values = history.get(tag, [])
  if len(values) < len(history[EPOCH]):
    raise ValueError(f'select_best={tag!r} needs that metric every epoch (eval_every=1)')
  return values[-1] < min(values[:-1], default=np.inf)


def _stop_if_diverged(loss, epoch, history, loop, manager):
  """Raises NumericalError on a NaN/inf training loss, before the epoch is saved."""
  if np.isfinite(loss):
    return
  finite = [(e, v) for e, v in zip(history[EPOCH], history.get(TRAIN_LOSS, [])) if np.isfinite(v)]
  last = (f'last finite loss {finite[-1][1]:.5g} at epoch {finite[-1][0]}' if finite
          else 'no finite loss before it')
  kept = f' (checkpoints so far are kept in {manager.directory})' if manager is not None else ''
  raise errors.NumericalError(
      loop.diverged_field, f'{loop.name} training diverged at epoch {epoch}: loss {loss} ({last}); '
      f'try a lower learning rate{kept}')


def _log_epoch(loop, epoch, metrics, eta_seconds):
  """One progress line: the epoch's loss, metrics, learning rate, rate and ETA."""
  shown = ''.join(f'  {tag} {value:.4g}' for tag, value in metrics.items()
                  if tag not in (TRAIN_LOSS, LEARNING_RATE, SAMPLES_PER_SEC))
  logging.info('%s epoch %d/%d  loss %.5f%s  lr %.3g  %.0f samples/s  ETA %s', loop.name, epoch,
               loop.epochs, metrics[TRAIN_LOSS], shown, metrics[LEARNING_RATE],
               metrics[SAMPLES_PER_SEC], datetime.timedelta(seconds=round(eta_seconds)))
