"""The AutoEncoder's held-out reconstruction quality: per-gene metrics, their table and Fig. 2a.

It scores a trained model (landmark.training.train) on the test split, so it sits on the
evaluation floor, above training.
"""

import os
from typing import Sequence

import numpy as np
import pandas as pd

from landmark import fileio
from landmark import metrics
from landmark.data import scalers
from landmark.data import splits
from landmark.evaluation import evaluate
from landmark.models import autoencoder
from landmark.training import sharding
from landmark.training import train


def evaluate_reconstruction(model: autoencoder.AutoEncoder, scaler: scalers.AffineScaler,
                            x: splits.Split | np.ndarray, workdir: str,
                            permutation_block: int = 2048, features: Sequence[str] | None = None,
                            alpha: float = 0.01) -> dict:
  """Per-gene MAE, PCC and permutation p-value of reconstructing held-out `x` (original units;
  a split, whose studies a study-conditional model is told, or an array).

  Writes `<workdir>/ae_gene_metrics.tsv` (feature, mae, pcc, perm_p) and the density plot
  `<workdir>/ae_density.png` (Fig. 2a) from process 0 (`sharding.is_primary`); returns a
  summary dict.
  """
  x = splits.as_split(x)
  codes = model.study_codes(x.meta['study'])
  x = np.asarray(x.values, np.float32)
  prediction = scaler.inverse_transform(
      np.asarray(train.reconstruct(model, scaler.transform(x), study_codes=codes)))
  mae = metrics.per_gene_mae(x, prediction)
  pcc = metrics.per_gene_pcc(x, prediction)
  perm_p = metrics.permutation_test(x, prediction, block_size=permutation_block)
  features = np.arange(x.shape[1]) if features is None else np.asarray(features)
  if sharding.is_primary():
    table = pd.DataFrame({'feature': features, 'mae': mae, 'pcc': pcc, 'perm_p': perm_p})
    fileio.write_table(os.path.join(workdir, 'ae_gene_metrics.tsv'), table, index=False)
    evaluate.plot_density(os.path.join(workdir, 'ae_density.png'),
                          {'MAE': mae, 'PCC': pcc}, 'per-gene value on held-out samples')
  return {'n_samples': len(x), 'n_features': x.shape[1], 'mean_mae': float(np.mean(mae)),
          'mean_pcc': float(np.mean(pcc)), 'n_pass': int(np.sum(perm_p < alpha)),
          'alpha': alpha}
