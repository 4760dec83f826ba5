"""Multi-host data parallelism: 2 processes of 1 or 2 CPU devices give the results of 1 device.

The processes of a multi-host run are subprocesses on localhost that meet at a coordinator
on a free port (`config.mesh.distributed`; jax.distributed, gloo CPU collectives) and share
one workdir, as hosts share a filesystem. Each trains the AutoEncoder (stopping after 2
epochs and resuming from the checkpoint), scores its inputs with DeepLIFT and fits D-GEX
(twice: the second fit restores the first's checkpoint), then saves what it computed to
its own .npz; a single process on 1 device runs the same script as the reference. Every
process must compute the same values, and only process 0 writes the shared files. Two
multi-host runs, one with 1 device per process (as with one GPU per process) and one
with 2 (each process holding several shards), run at once beside the reference.
"""

import glob
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_SECONDS = 240
TOLERANCE = dict(rtol=1e-5, atol=1e-6)
# Means of per-gene PCCs can lie near zero (about -0.014 here), where a relative tolerance
# measures nothing but rounding: an absolute one, far below any real difference.
NEAR_ZERO = {'mean_pcc': dict(rtol=0, atol=1e-4)}

SCRIPT = r'''
import os
import sys

from flax import nnx
import jax
import numpy as np
import pandas as pd

from configs import test as test_config
from configs import common
from landmark.attribution import deeplift
from landmark.evaluation import reconstruction
from landmark.inference import regression
from landmark.training import checkpointing
from landmark.training import core
from landmark.training import sharding
from landmark.training import train

workdir, output, coordinator, process_id = sys.argv[1:]
process_id = int(process_id)

# 64 real chowdary samples x 64 probes, log2.
frame = pd.read_csv(common.data_path('hgu133a', 'chowdary.tsv.gz'), sep='\t', index_col='probe',
                    nrows=64).iloc[:, :64]
values = np.log2(np.maximum(frame.T.to_numpy(np.float32), 1.0))
train_x, eval_x = values[:56], values[56:]

config = test_config.get_config('epochs=2')
config.model.hidden = (16,)
config.model.bottleneck = 4
config.train.batch_size = 16
config.train.checkpoint_every_epochs = 1
if process_id >= 0:
  config.mesh.distributed = True
  config.mesh.coordinator_address = coordinator
  config.mesh.num_processes = 2
  config.mesh.process_id = process_id
mesh = sharding.make_mesh(config)
assert mesh.size == jax.device_count() and jax.process_count() == (2 if process_id >= 0 else 1)

train.train_autoencoder(config, workdir, train_x, eval_x)
config.train.epochs = 3   # resumes from the checkpoint of epoch 2
model, scaler, history = train.train_autoencoder(config, workdir, train_x, eval_x)
params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
summary = reconstruction.evaluate_reconstruction(model, scaler, eval_x, workdir)

scaled = scaler.transform(train_x)
scores = deeplift.score_inputs(model.encoder_layers(), config.model.activation, scaled[:13],
                               scaled.mean(axis=0), max_chunk_mb=8 * 4 * 64 * 4 / 2**20,
                               mesh=mesh)

config.dgex.hidden = (16,)
config.dgex.optimizer = 'adam'
config.dgex.batch_size = 16
for _ in range(2):   # the second restores the final checkpoint of the first
  fit = regression.fit_dgex(config.dgex, train_x[:, :16], train_x[:, 16:], eval_x[:, :16],
                      eval_x[:, 16:], seed=1, workdir=os.path.join(workdir, 'dgex'), mesh=mesh)

np.savez(output, loss=history[core.TRAIN_LOSS], eval_mae=history[train.EVAL_MAE],
         mean_pcc=summary['mean_pcc'], scores=scores, dgex_val_mae=fit.history['val_mae'],
         dgex_prediction=fit.predict(eval_x[:, :16]),
         **{'ae/' + '/'.join(map(str, path)): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]},
         **{'dgex/' + '/'.join(map(str, path)): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(fit.params)[0]})
'''


def _free_port():
  with socket.socket() as probe:
    probe.bind(('localhost', 0))
    return probe.getsockname()[1]


def _run(runs, logdir):
  """Runs SCRIPT once per (workdir, output, coordinator, process_id, devices), all at once.

  Returns their outputs. A process that fails or outlives TIMEOUT_SECONDS (a hang) ends
  them all and fails the test with its log.
  """
  processes, logs = [], []
  for *arguments, devices in runs:
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    logs.append(logdir / f'{os.path.basename(arguments[1])}.log')
    with open(logs[-1], 'w') as log:
      processes.append(subprocess.Popen([sys.executable, '-c', SCRIPT, *map(str, arguments)],
                                        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
  deadline = time.monotonic() + TIMEOUT_SECONDS
  try:
    while True:
      codes = [process.poll() for process in processes]
      failed = [log for code, log in zip(codes, logs) if code]
      if not failed and codes.count(0) == len(codes):
        break
      assert not failed and time.monotonic() < deadline, (
          f'failed or ran past {TIMEOUT_SECONDS} s:\n'
          + '\n'.join(f'{log}:\n{log.read_text()[-5000:]}' for log in failed or logs))
      time.sleep(0.2)
  finally:
    for process in processes:
      process.kill()
      process.wait()
  return [dict(np.load(arguments[1])) for arguments in runs]


def test_two_processes_match_one_device(tmp_path):
  runs = [(tmp_path / 'single', tmp_path / 'single.npz', '', -1, 1)]
  for devices in (1, 2):
    coordinator = f'localhost:{_free_port()}'
    runs += [(tmp_path / f'shared{devices}', tmp_path / f'shared{devices}_process{i}.npz',
              coordinator, i, devices) for i in range(2)]
  reference, *outputs = _run(runs, logdir=tmp_path)
  for output, run in zip(outputs, runs[1:]):
    assert output.keys() == reference.keys()
    for key, value in reference.items():
      np.testing.assert_allclose(output[key], value, **NEAR_ZERO.get(key, TOLERANCE),
                                 err_msg=f'{key} of {run[1].name}')
  assert len(reference['loss']) == 3 and reference['loss'][-1] < reference['loss'][0]
  # Process 0 alone wrote the shared workdir's event files (one per training run) and tables.
  single = pd.read_csv(tmp_path / 'single' / 'ae_gene_metrics.tsv', sep='\t')
  for workdir in ('single', 'shared1', 'shared2'):
    assert len(glob.glob(str(tmp_path / workdir / 'tensorboard' / 'events.*'))) == 2, workdir
    table = pd.read_csv(tmp_path / workdir / 'ae_gene_metrics.tsv', sep='\t')
    assert list(table.columns) == list(single.columns) and len(table) == 64
    np.testing.assert_allclose(table['mae'], single['mae'], atol=1e-4)
    # A weakly reconstructed gene's PCC (a ratio of small covariances) amplifies float32
    # reduction-order differences between device layouts: 2.7e-4 seen on one x86 CPU.
    np.testing.assert_allclose(table['pcc'], single['pcc'], atol=2e-3)
