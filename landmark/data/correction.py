"""Study (batch) correction fitted on the training studies and applied to any study.

Kinds (config `preprocess.study_correction`):
  'none'    the paper: values pass through unchanged.
  'center'  each study's per-gene mean is replaced by the training grand mean.
  'combat'  parametric empirical-Bayes ComBat (Johnson, Li & Rabinovic 2007, sva's
            `ComBat(par.prior=TRUE)`), study as batch, no covariates.

Both corrections map every study onto the training grand mean per gene (ComBat's own
`stand.mean`), so corrected values stay in log2 units, keep the genes' absolute levels
(what min-max scaling, top-variance panels and mean-expression diagnostics read) and the
two kinds are interchangeable downstream; `values - grand_mean` has every study's
per-gene mean at 0.

A study is corrected as `(x - grand_mean - offset) / scale + grand_mean` with a per-gene
(offset, scale) of its own. Training studies keep the parameters fitted on them; a study
not seen in `fit` (the held-out study of leave-one-study-out) gets its parameters from its
own samples by the same estimator, standardised with the training grand mean and pooled
variance. ComBat's priors belong to each study (fitted across its genes), so a new study
is shrunk towards priors of its own, exactly as if it had been a batch of the fit. That
needs at least `MIN_SAMPLES[kind]` samples: 2 for 'center' (a single sample minus its own
mean is all zeros), 3 for 'combat' (a per-study variance with more than one degree of
freedom).

ComBat follows sva; checked against scanpy's `pp.combat` on the real studies (tests), whose
one difference is the prior variance of study locations, tau^2, divided by G genes, not G - 1.
"""

import os

import numpy as np
from numpy.typing import ArrayLike

from landmark import fileio
from landmark.errors import NumericalError

KINDS = ('none', 'center', 'combat')
MIN_SAMPLES = {'none': 0, 'center': 2, 'combat': 3}
COMBAT_TOLERANCE = 1e-4   # sva's `conv`: largest relative change of the posterior estimates
COMBAT_MAX_ITERATIONS = 1000   # sva has no cap; the five real studies take 3 to 21


def _posterior_location_scale(standardised, study='', max_iterations=COMBAT_MAX_ITERATIONS):
  """ComBat's empirical-Bayes (gamma*, delta*) per gene for one study's standardised data.

  The study's location gamma_hat (mean) and scale delta_hat (variance, ddof=1) per gene are
  shrunk towards priors estimated across its genes: gamma ~ N(gamma_bar, tau^2) and
  delta ~ InvGamma(a, b) by the method of moments, as sva does. The conditional posterior
  means depend on each other, so they are iterated to their joint fixed point; a
  NumericalError naming `study` if they do not reach it in `max_iterations`.
  """
  n = standardised.shape[0]
  gamma_hat = standardised.mean(axis=0)
  delta_hat = standardised.var(axis=0, ddof=1)
  gamma_bar, tau2 = gamma_hat.mean(), gamma_hat.var(ddof=1)
  m, s2 = delta_hat.mean(), delta_hat.var(ddof=1)
  a, b = (2 * s2 + m**2) / s2, (m * s2 + m**3) / s2
  gamma, delta = gamma_hat, delta_hat
  for _ in range(max_iterations):
    gamma_new = (tau2 * n * gamma_hat + delta * gamma_bar) / (tau2 * n + delta)
    sum2 = np.sum((standardised - gamma_new)**2, axis=0)
    delta_new = (0.5 * sum2 + b) / (0.5 * n + a - 1)
    with np.errstate(divide='ignore', invalid='ignore'):   # 0/0 (no change at 0) is skipped
      change = max(np.nanmax(np.abs(gamma_new - gamma) / np.abs(gamma)),
                   np.nanmax(np.abs(delta_new - delta) / np.abs(delta)))
    gamma, delta = gamma_new, delta_new
    if change <= COMBAT_TOLERANCE:
      return gamma, delta
  raise NumericalError('config.preprocess.study_correction',
                       f'ComBat did not converge on study {study!r} in {max_iterations} '
                       f'iterations (largest relative change {change:.3g}, tolerance '
                       f'{COMBAT_TOLERANCE:g})')


def _study_parameters(kind, study, values, grand_mean, pooled_sd):
  """(offset, scale) per gene of `study`, in the units of `values` (float64)."""
  own_mean = values.mean(axis=0)
  if kind == 'center':
    return own_mean - grand_mean, np.ones_like(grand_mean)
  varies = pooled_sd > 0
  offset, scale = own_mean - grand_mean, np.ones_like(grand_mean)
  standardised = (values[:, varies] - grand_mean[varies]) / pooled_sd[varies]
  gamma, delta = _posterior_location_scale(standardised, study)
  offset[varies] = gamma * pooled_sd[varies]
  scale[varies] = np.sqrt(delta)
  return offset, scale


class StudyCorrection:
  """Per-study correction of (samples, genes) values; see the module docstring.

  Genes that are constant within every training study (zero pooled variance) have no
  scale to estimate; ComBat centres them, as scanpy's `pp.combat` does.
  """

  def __init__(self, kind='none', studies=(), grand_mean=None, pooled_sd=None, offset=None,
               scale=None):
    if kind not in KINDS:
      raise ValueError(f"preprocess.study_correction must be one of {KINDS}, got {kind!r}")
    self.kind = kind
    self.studies = np.asarray(studies, dtype=str)
    self.grand_mean, self.pooled_sd = grand_mean, pooled_sd
    self.offset, self.scale = offset, scale

  @staticmethod
  def _labels(values, studies):
    studies = np.asarray(studies, dtype=str)
    if studies.shape != (np.shape(values)[0],):
      raise ValueError(f'{np.shape(values)[0]} samples but {studies.size} study labels')
    return studies

  def _check_size(self, study, n):
    if n < MIN_SAMPLES[self.kind]:
      raise ValueError(f"study {str(study)!r} has {n} sample(s); '{self.kind}' study correction "
                       f'needs at least {MIN_SAMPLES[self.kind]} to estimate its own parameters')

  def fit(self, values: np.ndarray, studies: ArrayLike) -> 'StudyCorrection':
    """Fits on training values (samples, genes) with one study label per sample."""
    studies = self._labels(values, studies)
    if self.kind == 'none':
      return self
    names = np.unique(studies)
    blocks = [np.asarray(values[studies == name], dtype=np.float64) for name in names]
    for name, block in zip(names, blocks):
      self._check_size(name, len(block))
    n_total = sum(len(b) for b in blocks)
    self.grand_mean = sum(b.sum(axis=0) for b in blocks) / n_total
    residual_ss = sum(np.sum((b - b.mean(axis=0))**2, axis=0) for b in blocks)
    self.pooled_sd = np.sqrt(residual_ss / n_total)
    parameters = [_study_parameters(self.kind, name, b, self.grand_mean, self.pooled_sd)
                  for name, b in zip(names, blocks)]
    self.studies = names
    self.offset = np.stack([p[0] for p in parameters])
    self.scale = np.stack([p[1] for p in parameters])
    return self

  def transform(self, values: np.ndarray, studies: ArrayLike) -> np.ndarray:
    """Corrected float32 values: fitted parameters for seen studies, own ones for new."""
    studies = self._labels(values, studies)
    if self.kind == 'none':
      return np.asarray(values, dtype=np.float32)
    if self.grand_mean is None:
      raise ValueError('StudyCorrection.transform called before fit')
    corrected = np.empty(values.shape, dtype=np.float32)
    seen = {name: i for i, name in enumerate(self.studies)}
    for name in np.unique(studies):
      rows = studies == name
      block = np.asarray(values[rows], dtype=np.float64)
      if name in seen:
        offset, scale = self.offset[seen[name]], self.scale[seen[name]]
      else:
        self._check_size(name, len(block))
        offset, scale = _study_parameters(self.kind, name, block, self.grand_mean,
                                          self.pooled_sd)
      corrected[rows] = (block - self.grand_mean - offset) / scale + self.grand_mean
    return corrected

  def inverse_transform(self, corrected: np.ndarray, studies: ArrayLike) -> np.ndarray:
    """The values before `transform` (float32) of samples of the studies seen in `fit`: what
    study effects were there to correct (a new study's parameters are not kept)."""
    studies = self._labels(corrected, studies)
    if self.kind == 'none':
      return np.asarray(corrected, dtype=np.float32)
    seen = {name: i for i, name in enumerate(self.studies)}
    unseen = sorted(set(studies) - set(seen))
    if unseen:
      raise ValueError(f'studies {unseen} were not seen in fit: their parameters are not kept')
    values = np.empty(corrected.shape, dtype=np.float32)
    for name in np.unique(studies):
      rows = studies == name
      offset, scale = self.offset[seen[name]], self.scale[seen[name]]
      values[rows] = ((np.asarray(corrected[rows], dtype=np.float64) - self.grand_mean) * scale +
                      self.grand_mean + offset)
    return values

  def save(self, path: str | os.PathLike) -> None:
    """Writes kind, studies and parameters as .npz (atomically)."""
    arrays = {'kind': np.array(self.kind), 'studies': self.studies}
    if self.kind != 'none':
      arrays.update(grand_mean=self.grand_mean, pooled_sd=self.pooled_sd, offset=self.offset,
                    scale=self.scale)
    with fileio.atomic_path(path) as tmp:
      with open(tmp, 'wb') as f:
        np.savez(f, **arrays)

  @classmethod
  def load(cls, path: str | os.PathLike) -> 'StudyCorrection':
    """Reads a correction written by `save`, ready to transform without refitting."""
    with np.load(path) as saved:
      arrays = {key: saved[key] for key in saved.files}
    return cls(str(arrays.pop('kind')), **arrays)
