"""Throughput of the AutoEncoder training step against the machine's float32 matmul peak.

Sections are functions returning named `Timer`s (add more to SECTIONS); all timers are
measured together, their repeats interleaved, so that a change in the machine's load hits
every measurement alike and the ratios stay fair on a shared machine:
  matmul    each of the step's five large float32 matmuls alone, jitted: the fastest is the
            machine's practical peak (`matmul_gflops`).
  ae_step   the training core's jitted epoch (landmark.training.core.train_epoch: a scan of the
            train step, with its XLA:CPU options) over --steps batches at the paper's width;
            achieved FLOP/s from the analytic count below and its ratio to the peak.
  dgex_step D-GEX's training epoch through the same core at the paper's width (943 ->
            3 x 9,000 -> 9,520, batch 200; --dgex_widths, --dgex_batch), --dgex_steps steps:
            achieved FLOP/s over the peak (`dgex_step_ratio`); the matmul section then adds
            D-GEX's 9,000 x 9,000 product, so the peak covers its shapes too.
  torch     the same model, loss and Adam step in PyTorch on CPU (if importable); the
            speedup is PyTorch's step time / ours.
  deeplift  landmark.attribution.deeplift.score_inputs over --deeplift_samples samples through the
            encoder (n -> hidden -> bottleneck, sigmoid): samples/s, and achieved FLOP/s
            (deeplift.deeplift_flops: one forward pass and one backward pass per unit) over
            the matmul peak (`deeplift_samples_per_s`, `deeplift_ratio`).
  stream    larger than memory (landmark.data.streaming), measured once, not interleaved: a
            --stream_samples x --features float32 GCTX is written in chunks to a temporary
            directory; a fresh subprocess fits the scaler in one streaming pass, trains
            --stream_epochs epochs of the AutoEncoder streamed from the file
            (train.train_autoencoder; the figures are the last epoch's, the first one
            compiles) and DeepLIFT-scores the first --stream_score_samples samples (0 =
            all) streamed through the trained encoder. It reports that process's peak
            resident memory beside the file's size (`stream_peak_rss_mb`,
            `stream_file_mb`; `stream_baseline_rss_mb` is the process before any work),
            the resident memory at the end of each epoch and its mean growth per epoch
            (`stream_rss_after_epoch_mb`, `stream_rss_growth_per_epoch_mb`: ~0 when no
            buffers are retained across epochs) and the fraction of the epoch the step waited for
            data (`stream_data_wait_fraction`). The file is deleted afterwards; it was just
            written, so it is read from the page cache, not the disk.

  selector  greedy ridge, measured once in fresh subprocesses (not interleaved): (a) the
            17 studies' fold-0 training split (361 x 9,403 D-GEX genes), k = 943 with the
            penalty validation (3 held-out groups x 4 penalties): the numpy path it replaced
            (experiments/numpy_greedy_ridge.py) against the JAX one in float64 and float32,
            wall time and peak RSS, `selector_speedup` (numpy / JAX float64) and whether the
            panels are the same; (b) a generated --selector_rows x --selector_genes float32
            GCTX of --selector_studies studies (low-rank structure, study offsets, a 'study'
            column field) streamed once into the gene-space cross-product (float32,
            --selector_chunk rows a read) and the greedy path to --selector_k at one
            penalty: wall times, peak RSS, the pass's data-wait fraction and GFLOP/s over
            a matmul of its shapes, and the greedy step's GFLOP/s over the matrix-vector
            product at its shapes (C @ w, genes x genes: the step's dominant term) and
            over the machine's matmul peak.

FLOP count of one step, batch B, layer sizes (in, out): forward F = 2 B sum(in * out);
backward = 2 F minus the input layer's input gradient (2 B n_inputs hidden, never needed:
the input is data), so a step needs 3 F - 2 B n h matmul FLOPs (28.66 GFLOP at the paper's
width and B = 256; 3 F would be 34.36). Element-wise work (sigmoid, dropout, |.|, Adam) is
not counted: it is memory-bound and small in FLOPs.

Timings are best-of---repeats wall times; the JSON records the load average as well.

  python -m experiments.benchmark --out=runs/benchmark.json
  python -m experiments.benchmark --sections=matmul,ae_step --batch=512 --out=/tmp/b.json
  python -m experiments.benchmark --sections=matmul,dgex_step --merge --out=runs/benchmark.json
  python -m experiments.benchmark --sections=stream --merge --out=runs/benchmark.json
  python -m experiments.benchmark --sections=selector --merge --out=runs/benchmark.json
"""

import dataclasses
import functools
import json
import logging as logging_lib
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Callable

# Run as a file (python experiments/benchmark.py), not with -m: the repository root goes on
# the path, as -m puts it there, so that `configs` and `landmark` import.
if not __package__:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags
from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from configs import common
from configs import compendium
from experiments import numpy_greedy_ridge
from landmark import fileio
from landmark import pipeline
from landmark.attribution import deeplift
from landmark.data import readers
from landmark.data import streaming
from landmark.evaluation import panels as panels_lib
from landmark.inference import regression
from landmark.models import dgex
from landmark.selection import greedy_ridge
from landmark.training import core
from landmark.training import sharding
from landmark.training import train

_OUT = flags.DEFINE_string('out', None, 'JSON file for the results.')
_SECTIONS = flags.DEFINE_list('sections', ['matmul', 'ae_step', 'torch', 'deeplift'],
                              'Sections to run.')
_FEATURES = flags.DEFINE_integer('features', 22268, 'AutoEncoder inputs (probes).')
_HIDDEN = flags.DEFINE_integer('hidden', 500, 'Hidden width (encoder and decoder).')
_BOTTLENECK = flags.DEFINE_integer('bottleneck', 100, 'Bottleneck width.')
_BATCH = flags.DEFINE_integer('batch', 256, 'Batch size.')
_STEPS = flags.DEFINE_integer('steps', 8, 'Steps (calls, or scanned steps) per timed repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats; the best is reported.')
_DEEPLIFT_SAMPLES = flags.DEFINE_integer('deeplift_samples', 128, 'Samples scored per timed '
                                        'DeepLIFT repeat (encoder n -> hidden -> bottleneck).')
_STREAM_SAMPLES = flags.DEFINE_integer('stream_samples', 20000, 'Samples in the streamed GCTX.')
_STREAM_EPOCHS = flags.DEFINE_integer('stream_epochs', 3, 'Streamed training epochs.')
_STREAM_SCORE_SAMPLES = flags.DEFINE_integer('stream_score_samples', 0, 'Samples DeepLIFT '
                                            'scores from the stream (0 = all).')
_DGEX_WIDTHS = flags.DEFINE_list('dgex_widths', ['943', '9000', '9000', '9000', '9520'],
                                 "D-GEX's layer widths: landmarks, hidden..., targets.")
_DGEX_BATCH = flags.DEFINE_integer('dgex_batch', 200, "D-GEX's batch size (the paper's 200).")
_DGEX_STEPS = flags.DEFINE_integer('dgex_steps', 2, 'D-GEX steps per timed repeat.')
_SELECTOR_ROWS = flags.DEFINE_integer('selector_rows', 100000, 'Profiles in the generated '
                                      'GCTX of the selector section.')
_SELECTOR_GENES = flags.DEFINE_integer('selector_genes', 12600, 'Genes in that GCTX.')
_SELECTOR_STUDIES = flags.DEFINE_integer('selector_studies', 200, 'Studies in that GCTX.')
_SELECTOR_K = flags.DEFINE_integer('selector_k', 1000, 'Genes the streamed greedy path takes.')
_SELECTOR_CHUNK = flags.DEFINE_integer('selector_chunk', 4096, 'Rows per read of that pass.')
_MERGE = flags.DEFINE_bool('merge', False, 'Update the keys of an existing --out JSON '
                           'instead of replacing it.')
flags.mark_flag_as_required('out')


@dataclasses.dataclass
class Timer:
  """`run()` performs `steps` steps of `flops` FLOPs each; returns something to block on."""
  run: Callable[[], object]
  steps: int
  flops: float


def time_interleaved(timers, repeats):
  """Best wall seconds per step of each timer, over `repeats` round-robin rounds."""
  for timer in timers.values():
    jax.block_until_ready(timer.run())  # compile and warm up
  best = {name: float('inf') for name in timers}
  for _ in range(repeats):
    for name, timer in timers.items():
      started = time.perf_counter()
      jax.block_until_ready(timer.run())
      best[name] = min(best[name], (time.perf_counter() - started) / timer.steps)
  return best


def layer_sizes():
  widths = (_FEATURES.value, _HIDDEN.value, _BOTTLENECK.value, _HIDDEN.value, _FEATURES.value)
  return list(zip(widths[:-1], widths[1:]))


def step_flops():
  """Matmul FLOPs of one training step (see the module docstring)."""
  batch = _BATCH.value
  forward = 2 * batch * sum(i * o for i, o in layer_sizes())
  return 3 * forward - 2 * batch * _FEATURES.value * _HIDDEN.value


def dgex_widths():
  return [int(width) for width in _DGEX_WIDTHS.value]


def dgex_step_flops():
  """Matmul FLOPs of one D-GEX step: 3 F minus the first layer's (unneeded) input gradient,
  as for the AutoEncoder (module docstring)."""
  widths, batch = dgex_widths(), _DGEX_BATCH.value
  forward = 2 * batch * sum(i * o for i, o in zip(widths[:-1], widths[1:]))
  return 3 * forward - 2 * batch * widths[0] * widths[1]


def _repeat(call, steps):
  def run():
    for _ in range(steps - 1):
      call()
    return call()
  return run


def matmul():
  """The step's five large float32 matmuls, each alone and jitted."""
  b, n, h = _BATCH.value, _FEATURES.value, _HIDDEN.value
  products = {
      'encoder forward x @ W1': ((b, n), (n, h), jnp.matmul),
      'decoder forward h @ W4': ((b, h), (h, n), jnp.matmul),
      'decoder input grad g @ W4.T': ((b, n), (h, n), lambda g, w: g @ w.T),
      'encoder kernel grad x.T @ g': ((b, n), (b, h), lambda x, g: x.T @ g),
      'decoder kernel grad h.T @ g': ((b, h), (b, n), lambda h, g: h.T @ g),
  }
  if 'dgex_step' in _SECTIONS.value:   # the peak must include D-GEX's own (larger) shapes
    widths, batch = dgex_widths(), _DGEX_BATCH.value
    products['D-GEX hidden forward h @ W'] = ((batch, widths[1]), (widths[1], widths[2]),
                                              jnp.matmul)
  keys = iter(jax.random.split(jax.random.key(0), 2 * len(products)))
  timers = {}
  for name, (lhs_shape, rhs_shape, product) in products.items():
    lhs = jax.random.normal(next(keys), lhs_shape, jnp.float32)
    rhs = jax.random.normal(next(keys), rhs_shape, jnp.float32)
    product = jax.jit(product)
    out_shape = jax.eval_shape(product, lhs, rhs).shape
    flops = 2 * round(np.sqrt(np.prod(lhs_shape + rhs_shape + out_shape, dtype=np.float64)))
    timers[f'matmul {name}'] = Timer(_repeat(functools.partial(product, lhs, rhs),
                                             _STEPS.value), _STEPS.value, flops)
  return timers


def _config():
  config = common.base_config()
  config.model.hidden = (_HIDDEN.value,)
  config.model.bottleneck = _BOTTLENECK.value
  config.train.batch_size = _BATCH.value
  return config


def ae_step():
  """The training core's jitted epoch (landmark.training.core.train_epoch) of --steps batches."""
  config = _config()
  batch, n_features, steps = _BATCH.value, _FEATURES.value, _STEPS.value
  mesh = sharding.device_mesh()
  model = train.build_model(config, n_features, jax.random.key(0))
  optimizer = train.build_optimizer(config)
  state = core.new_state(nnx.view(model, deterministic=False), optimizer, jax.random.key(1), mesh)
  objective = train.Reconstruction(config.train.l2, config.train.loss)
  data = core.device_data({'x': jax.random.uniform(jax.random.key(1), (steps * batch, n_features),
                                                   jnp.float32)}, mesh)
  epoch = 0

  def run():
    nonlocal state, epoch
    epoch += 1
    state, loss = core.train_epoch(state, objective, optimizer, data, epoch, batch, steps * batch,
                                   mesh)
    return loss

  return {'ae_step': Timer(run, steps, step_flops())}


def dgex_step():
  """D-GEX's training epoch through the core (SGD with momentum, dropout) at --dgex_widths."""
  widths, batch, steps = dgex_widths(), _DGEX_BATCH.value, _DGEX_STEPS.value
  config = common.base_config().dgex
  config.hidden, config.batch_size = tuple(widths[1:-1]), batch
  mesh = sharding.device_mesh()
  key = jax.random.key(5)
  model = dgex.build_dgex(config, widths[0], widths[-1], key)
  optimizer = regression.build_optimizer(config)
  state = core.new_state(nnx.view(model, deterministic=False), optimizer, key, mesh)
  data = core.device_data({'x': np.asarray(jax.random.normal(key, (steps * batch, widths[0]))),
                           'y': np.asarray(jax.random.normal(key, (steps * batch, widths[-1])))},
                          mesh)
  epoch = 0

  def run():
    nonlocal state, epoch
    epoch += 1
    state, loss = core.train_epoch(state, regression.SquaredError(), optimizer, data, epoch, batch,
                                   steps * batch, mesh)
    return loss

  return {'dgex_step': Timer(run, steps, dgex_step_flops())}


def torch_cpu():
  """The same AutoEncoder, loss (MAE + l2 * sum W^2) and Adam step in PyTorch on CPU."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning('PyTorch is not importable: skipping the comparison.')
    return {}
  config = _config()
  batch, n_features = _BATCH.value, _FEATURES.value
  torch.manual_seed(0)
  layers = []
  for i, (fan_in, fan_out) in enumerate(layer_sizes()):
    layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.Sigmoid()]
    if i in (0, 2):  # after the encoder's and the decoder's hidden layer, as in models.py
      layers.append(torch.nn.Dropout(config.model.dropout))
  model = torch.nn.Sequential(*layers).train()
  kernels = [layer.weight for layer in model if isinstance(layer, torch.nn.Linear)]
  optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate,
                               betas=(config.train.b1, config.train.b2), eps=config.train.eps)
  data = torch.rand(4 * batch, n_features)
  order = torch.randperm(4 * batch)
  state = {'step': 0}

  def step():
    x = data[order[(state['step'] % 4) * batch:][:batch]]
    optimizer.zero_grad(set_to_none=True)
    loss = (model(x) - x).abs().mean() + config.train.l2 * sum((w ** 2).sum() for w in kernels)
    loss.backward()
    optimizer.step()
    state['step'] += 1
    return loss.item()

  logging.info('PyTorch %s, %d threads', torch.__version__, torch.get_num_threads())
  return {'torch': Timer(_repeat(step, _STEPS.value), _STEPS.value, step_flops())}


def deeplift_scoring():
  """DeepLIFT scores of --deeplift_samples samples through the encoder at the paper's width."""
  n, h, b = _FEATURES.value, _HIDDEN.value, _BOTTLENECK.value
  keys = jax.random.split(jax.random.key(4), 5)
  layers = [(np.asarray(jax.random.normal(keys[0], (n, h)) / np.sqrt(n)), np.zeros(h, np.float32)),
            (np.asarray(jax.random.normal(keys[1], (h, b)) / np.sqrt(h)), np.zeros(b, np.float32))]
  x = np.asarray(jax.random.uniform(keys[2], (_DEEPLIFT_SAMPLES.value, n)))
  reference = x.mean(axis=0)

  def run():
    return deeplift.score_inputs(layers, 'sigmoid', x, reference)

  flops = deeplift.deeplift_flops((n, h, b), len(x))
  return {'deeplift': Timer(run, 1, flops)}


SECTIONS = {'matmul': matmul, 'ae_step': ae_step, 'dgex_step': dgex_step, 'torch': torch_cpu,
            'deeplift': deeplift_scoring}


def write_random_gctx(path, n_samples, n_features, chunk_samples=1024):
  """A GCTX of uniform [0, 16) float32 values, written chunk by chunk (never whole in memory)."""
  import h5py  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  with h5py.File(path, 'w') as f:
    matrix = f.create_dataset(readers.GCTX_MATRIX, (n_samples, n_features), np.float32,
                              chunks=(min(chunk_samples, n_samples), n_features))
    for start in range(0, n_samples, chunk_samples):
      stop = min(start + chunk_samples, n_samples)
      matrix[start:stop] = rng.uniform(0, 16, (stop - start, n_features)).astype(np.float32)
    f.create_dataset(f'{readers.GCTX_ROW_META}/id',
                     data=np.array([f'probe_{j}' for j in range(n_features)], 'S'))
    f.create_dataset(f'{readers.GCTX_COL_META}/id',
                     data=np.array([f'sample_{i}' for i in range(n_samples)], 'S'))


def write_studied_gctx(path, n_samples, n_features, n_studies, chunk_samples=4096, rank=20):
  """A GCTX of log2-like float32 profiles in `n_studies` equal studies, written chunk by
  chunk: 8 + a per-study offset per gene + rank-`rank` structure + noise, with the study of
  each profile in the column field 'study' (config.data.study_field)."""
  import h5py  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  loadings = rng.normal(size=(rank, n_features)).astype(np.float32) / np.sqrt(rank)
  offsets = rng.normal(scale=0.5, size=(n_studies, n_features)).astype(np.float32)
  noise_sd = rng.uniform(0.2, 1.0, n_features).astype(np.float32)
  study = np.arange(n_samples) * n_studies // n_samples
  with h5py.File(path, 'w') as f:
    matrix = f.create_dataset(readers.GCTX_MATRIX, (n_samples, n_features), np.float32,
                              chunks=(min(chunk_samples, n_samples), n_features))
    for start in range(0, n_samples, chunk_samples):
      stop = min(start + chunk_samples, n_samples)
      factors = rng.normal(size=(stop - start, rank)).astype(np.float32)
      noise = rng.standard_normal((stop - start, n_features), np.float32) * noise_sd
      matrix[start:stop] = 8 + offsets[study[start:stop]] + factors @ loadings + noise
    f.create_dataset(f'{readers.GCTX_ROW_META}/id',
                     data=np.array([f'gene_{j}' for j in range(n_features)], 'S'))
    f.create_dataset(f'{readers.GCTX_COL_META}/id',
                     data=np.array([f'sample_{i}' for i in range(n_samples)], 'S'))
    f.create_dataset(f'{readers.GCTX_COL_META}/study',
                     data=np.array([f'study_{s}' for s in study], 'S'))


def _current_rss_mb():
  """This process's resident memory now (Linux), in MiB."""
  with open('/proc/self/status') as status:
    return next(int(line.split()[1]) for line in status if line.startswith('VmRSS:')) / 2**10


class _RssAtEpochEnd(logging_lib.Handler):
  """Notes the resident memory whenever train.train_autoencoder logs an epoch's end."""

  def __init__(self):
    super().__init__()
    self.rss_mb = []

  def emit(self, record):
    if record.pathname == train.__file__ and str(record.msg).startswith('epoch '):
      self.rss_mb.append(_current_rss_mb())


def _stream_run(path, workdir, hidden, bottleneck, batch, epochs, score_samples):
  """In a fresh process: scaler pass, streamed training, streamed DeepLIFT; peak RSS."""
  logging.set_verbosity(logging.INFO)  # a spawned process starts without the parent's flags
  jax.block_until_ready(jnp.zeros(1))
  baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
  config = common.base_config()
  config.model.hidden, config.model.bottleneck = (hidden,), bottleneck
  config.train.batch_size, config.train.epochs = batch, epochs
  config.train.checkpoint_every_epochs = epochs
  options = dict(chunk_samples=config.data.chunk_samples, prefetch=config.data.prefetch,
                 shuffle_buffer_chunks=config.data.shuffle_buffer_chunks)
  stream = streaming.SampleStream(path, **options)
  started = time.perf_counter()
  scaler = streaming.fit_scaler(stream)
  scaler_seconds = time.perf_counter() - started
  epoch_ends = _RssAtEpochEnd()
  logging.get_absl_logger().addHandler(epoch_ends)
  model, _, history = train.train_autoencoder(config, workdir, stream, None)
  logging.get_absl_logger().removeHandler(epoch_ends)
  rss_after_epoch = epoch_ends.rss_mb
  scored = streaming.SampleStream(path, np.arange(score_samples or len(stream)), **options)
  arrays = scored.with_transform(scaler.transform).arrays()
  reference = scaler.transform(stream.stats().mean[None])[0]
  started = time.perf_counter()
  deeplift.score_inputs(model.encoder_layers(), config.model.activation, arrays, reference,
                        max_chunk_mb=256.0)
  score_seconds = time.perf_counter() - started
  return {
      'stream_scaler_pass_mb_per_s': os.path.getsize(path) / 2**20 / scaler_seconds,
      'stream_train_samples_per_s': history[core.SAMPLES_PER_SEC][-1],
      'stream_data_wait_fraction': history[core.DATA_WAIT_FRACTION][-1],
      'stream_score_samples': len(scored),
      'stream_score_samples_per_s': len(scored) / score_seconds,
      'stream_score_data_wait_fraction': arrays.wait_seconds / score_seconds,
      'stream_peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
      'stream_baseline_rss_mb': baseline_rss,  # the process after importing and starting JAX
      'stream_rss_after_epoch_mb': rss_after_epoch,
      'stream_rss_growth_per_epoch_mb': ((rss_after_epoch[-1] - rss_after_epoch[0])
                                         / max(epochs - 1, 1)),
  }


def stream_section():
  """Streams a generated GCTX through training and scoring in a subprocess (see top)."""
  directory = tempfile.mkdtemp(prefix='stream_benchmark_')
  try:
    path = os.path.join(directory, 'random.gctx')
    started = time.perf_counter()
    write_random_gctx(path, _STREAM_SAMPLES.value, _FEATURES.value)
    logging.info('Wrote %s (%.0f MB) in %.0f s', path, os.path.getsize(path) / 2**20,
                 time.perf_counter() - started)
    with multiprocessing.get_context('spawn').Pool(1) as pool:
      results = pool.apply(_stream_run, (path, os.path.join(directory, 'run'), _HIDDEN.value,
                                         _BOTTLENECK.value, _BATCH.value, _STREAM_EPOCHS.value,
                                         _STREAM_SCORE_SAMPLES.value))
    results.update({'stream_samples': _STREAM_SAMPLES.value,
                    'stream_file_mb': os.path.getsize(path) / 2**20,
                    'stream_load_average_1min': os.getloadavg()[0]})
  finally:
    shutil.rmtree(directory)
  results['stream_peak_rss_over_file'] = results['stream_peak_rss_mb'] / results['stream_file_mb']
  return results


SELECTOR_ALPHAS = (1.0, 10.0, 100.0, 1000.0)   # the default config.selectors grid
SELECTOR_K17 = 943


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def _selector_17(data_path, implementation):
  """In a fresh process: the 17 studies' selection at k = 943 with validation, by
  `implementation` ('numpy', 'float64' or 'float32'); seconds, peak RSS, the panel."""
  logging.set_verbosity(logging.INFO)
  data = np.load(data_path)
  values, studies = data['values'], data['studies']
  jax.block_until_ready(jnp.zeros(1))
  baseline = _peak_rss_mb()
  started = time.perf_counter()
  if implementation == 'numpy':
    order = numpy_greedy_ridge.selection(values, studies, SELECTOR_ALPHAS, SELECTOR_K17,
                                         SELECTOR_K17, 3, True)
  else:
    moments = greedy_ridge.in_memory(values, studies, 3, dtype=implementation)
    order = greedy_ridge.select(moments, SELECTOR_K17, SELECTOR_ALPHAS, SELECTOR_K17,
                                True)[0].order[0]
  return {'seconds': time.perf_counter() - started, 'peak_rss_mb': _peak_rss_mb(),
          'baseline_rss_mb': baseline, 'order': np.asarray(order).tolist()}


def _best_seconds(call, repeats=3):
  jax.block_until_ready(call())
  best = float('inf')
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(call())
    best = min(best, time.perf_counter() - started)
  return best


def _selector_stream_run(path, k, chunk):
  """In a fresh process: one streamed pass into the gene-space cross-product, then the
  greedy path to k; times, peak RSS, data wait, and rates against matmuls of its shapes."""
  logging.set_verbosity(logging.INFO)
  jax.block_until_ready(jnp.zeros(1))
  baseline = _peak_rss_mb()
  stream = streaming.SampleStream(path, chunk_samples=chunk, prefetch=2, study_field='study')
  rows, genes = stream.shape
  arrays = stream.arrays()
  started = time.perf_counter()
  moments = greedy_ridge.accumulate(arrays, stream.meta['study'].to_numpy(), genes, 1,
                                    'genes', 'float32')
  jax.block_until_ready(moments.cross)
  pass_seconds = time.perf_counter() - started
  pass_rss = _peak_rss_mb()
  greedy_ridge.greedy_paths(moments, [greedy_ridge.ALL_ROWS], [10.0],   # compiles the step
                            greedy_ridge.STEPS_PER_CALL, True)
  started = time.perf_counter()
  paths, _ = greedy_ridge.greedy_paths(moments, [greedy_ridge.ALL_ROWS], [10.0], k, True)
  greedy_seconds = time.perf_counter() - started
  # The step: C @ w (2 genes² FLOP) and four products of the path's history with a vector
  # (2 t genes each at step t): k (2 g² ) + 4 g k² in all.
  greedy_flops = 2.0 * k * genes ** 2 + 4.0 * genes * k ** 2
  cross = moments.cross[0]
  vector = jnp.ones((1, cross.shape[0]), jnp.float32)
  matvec = jax.jit(lambda c, v: jax.lax.fori_loop(
      0, 16, lambda i, v: (c @ v[0])[None] * 1e-6 + v, v))
  matvec_gflops = 16 * 2.0 * cross.shape[0] ** 2 / _best_seconds(
      lambda: matvec(cross, vector)) / 1e9
  block = jax.random.normal(jax.random.key(0), (chunk, cross.shape[0]), jnp.float32)
  gram = jax.jit(lambda x: x.T @ x)
  pass_matmul_gflops = 2.0 * chunk * cross.shape[0] ** 2 / _best_seconds(
      lambda: gram(block)) / 1e9
  pass_gflops = 2.0 * rows * genes ** 2 / pass_seconds / 1e9
  greedy_gflops = greedy_flops / greedy_seconds / 1e9
  return {
      'selector_stream_rows': rows, 'selector_stream_genes': genes, 'selector_stream_k': k,
      'selector_stream_pass_seconds': pass_seconds,
      'selector_stream_pass_data_wait_fraction': arrays.wait_seconds / pass_seconds,
      'selector_stream_pass_gflops': pass_gflops,
      'selector_stream_pass_ratio': pass_gflops / pass_matmul_gflops,
      'selector_stream_greedy_seconds': greedy_seconds,
      'selector_stream_total_seconds': pass_seconds + greedy_seconds,
      'selector_stream_greedy_gflops': greedy_gflops,
      'selector_stream_matvec_gflops': matvec_gflops,
      'selector_greedy_step_ratio': greedy_gflops / matvec_gflops,
      'selector_stream_pass_peak_rss_mb': pass_rss,
      'selector_stream_peak_rss_mb': _peak_rss_mb(),
      'selector_stream_baseline_rss_mb': baseline,
      'selector_stream_first_genes': paths.order[0, :5].tolist(),
  }


def selector_section():
  """Greedy ridge: the 17 studies, old path against new, then a generated compendium
  streamed and selected (see top); every measurement in a fresh process."""
  directory = tempfile.mkdtemp(prefix='selector_benchmark_')
  results = {}
  try:
    config = compendium.get_config('folds=5,fold=0')
    splits = pipeline.prepare_data(config, directory)
    genes = panels_lib.gene_splits(splits, readers.read_probe_annotation(config.data.annotation),
                                   panels_lib.dgex_universe(config.data))
    data_path = os.path.join(directory, 'fold0.npz')
    np.savez(data_path, values=genes.train, studies=genes.train_studies.astype(str))
    runs = {}
    for implementation in ('numpy', 'float64', 'float32'):
      with multiprocessing.get_context('spawn').Pool(1) as pool:
        runs[implementation] = pool.apply(_selector_17, (data_path, implementation))
      logging.info('selector, 17 studies, %s: %.1f s', implementation,
                   runs[implementation]['seconds'])
    for implementation, run in runs.items():
      results[f'selector17_{implementation}_seconds'] = run['seconds']
      results[f'selector17_{implementation}_peak_rss_mb'] = run['peak_rss_mb']
    results['selector17_shape'] = list(genes.train.shape)
    results['selector_speedup'] = runs['numpy']['seconds'] / runs['float64']['seconds']
    results['selector_speedup_float32'] = runs['numpy']['seconds'] / runs['float32']['seconds']
    results['selector17_float64_same_panel'] = runs['float64']['order'] == runs['numpy']['order']
    results['selector17_float32_shared_genes'] = len(set(runs['float32']['order'])
                                                     & set(runs['numpy']['order']))
    path = os.path.join(directory, 'compendium.gctx')
    started = time.perf_counter()
    write_studied_gctx(path, _SELECTOR_ROWS.value, _SELECTOR_GENES.value,
                       _SELECTOR_STUDIES.value, _SELECTOR_CHUNK.value)
    logging.info('Wrote %s (%.0f MB) in %.0f s', path, os.path.getsize(path) / 2**20,
                 time.perf_counter() - started)
    with multiprocessing.get_context('spawn').Pool(1) as pool:
      results.update(pool.apply(_selector_stream_run, (path, _SELECTOR_K.value,
                                                       _SELECTOR_CHUNK.value)))
    results['selector_stream_file_mb'] = os.path.getsize(path) / 2**20
    results['selector_load_average_1min'] = os.getloadavg()[0]
  finally:
    shutil.rmtree(directory)
  return results


def summarize(timers, seconds):
  """Per-timer seconds and GFLOP/s, and the headline ratios between sections."""
  gflops = {name: timers[name].flops / seconds[name] / 1e9 for name in timers}
  results = {'seconds_per_step': seconds, 'gflops': gflops, 'ae_step_gflop': step_flops() / 1e9}
  matmuls = [name for name in timers if name.startswith('matmul ')]
  if matmuls:
    results['matmul_gflops'] = max(gflops[name] for name in matmuls)
    # The rate of a step made of nothing but these matmuls at their measured speeds.
    results['matmul_step_mix_gflops'] = (sum(timers[name].flops for name in matmuls)
                                         / sum(seconds[name] for name in matmuls) / 1e9)
  if 'ae_step' in timers:
    results['ae_step_gflops'] = gflops['ae_step']
    results['ae_step_samples_per_sec'] = _BATCH.value / seconds['ae_step']
    if matmuls:
      results['ae_step_ratio'] = gflops['ae_step'] / results['matmul_gflops']
      results['ae_step_ratio_to_mix'] = gflops['ae_step'] / results['matmul_step_mix_gflops']
    if 'torch' in timers:
      results['ae_vs_torch_speedup'] = seconds['torch'] / seconds['ae_step']
  if 'dgex_step' in timers:
    results['dgex_step_gflop'] = dgex_step_flops() / 1e9
    results['dgex_step_gflops'] = gflops['dgex_step']
    if matmuls:
      results['dgex_step_ratio'] = gflops['dgex_step'] / results['matmul_gflops']
  if 'deeplift' in timers:
    results['deeplift_samples_per_s'] = _DEEPLIFT_SAMPLES.value / seconds['deeplift']
    if matmuls:
      results['deeplift_ratio'] = gflops['deeplift'] / results['matmul_gflops']
  return results


def table(results):
  """The results as aligned 'name  value' lines."""
  rows = []
  for name, value in results.items():
    if isinstance(value, dict):
      rows += [(f'{name}[{key}]', item) for key, item in value.items()]
    else:
      rows.append((name, value))
  width = max(len(name) for name, _ in rows)
  return '\n'.join(f'{name:<{width}}  {value:.4g}' if isinstance(value, float)
                   else f'{name:<{width}}  {value}' for name, value in rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  timers = {}
  for name in _SECTIONS.value:
    if name not in ('stream', 'selector'):
      timers.update(SECTIONS[name]())
  results = {'device': str(jax.devices()[0]), 'jax_version': jax.__version__,
             'batch': _BATCH.value, 'layers': layer_sizes(),
             'matmul_precision': str(jax.config.jax_default_matmul_precision),
             'xla_flags': os.environ.get('XLA_FLAGS', '')}
  if timers:
    seconds = time_interleaved(timers, _REPEATS.value)
    results.update(load_average_1min=os.getloadavg()[0],  # > cores: other work shared the CPU
                   **summarize(timers, seconds))
  if 'stream' in _SECTIONS.value:
    results.update(stream_section())
  if 'selector' in _SECTIONS.value:
    results.update(selector_section())
  print(table(results))
  if _MERGE.value and os.path.exists(_OUT.value):
    with open(_OUT.value) as f:
      results = {**json.load(f), **results}
  fileio.write_text(_OUT.value, json.dumps(results, indent=2) + '\n')


if __name__ == '__main__':
  app.run(main)
