"""Notebook entry points: a gene panel designed from an expression matrix, the paper's
DeepLIFT landmarks of one, and the verdict on a finished run's panels, as DataFrames
instead of files to read."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Sequence

import ml_collections
import pandas as pd

from configs import panel as panel_config
from configs import quick
from landmark import fileio
from landmark import pipeline
from landmark.attribution import ranking as ranking_lib
from landmark.evaluation import panels as panels_lib
from landmark.evaluation import report

if TYPE_CHECKING:   # anndata is an optional dependency: never imported at run time
  import anndata

INPUT_FILE = 'input.tsv'   # a DataFrame (or AnnData) given to the API, as the run reads it
STUDIES_FILE = 'input_studies.tsv'   # the study of each of its samples (design_panel)


def _is_anndata(data) -> bool:
  """Whether `data` is an AnnData, told without importing anndata (an optional dependency)."""
  return type(data).__name__ == 'AnnData'


def _expression_file(data, workdir: str) -> str:
  """The path of a supported expression file holding `data`: `data` itself when it is a path;
  a samples x genes DataFrame (an AnnData via its `to_df`) written as `<workdir>/input.tsv`,
  genes in rows as data.read_table expects."""
  if isinstance(data, (str, os.PathLike)):
    return os.path.abspath(os.fspath(data))
  if _is_anndata(data):
    data = data.to_df()
  if not isinstance(data, pd.DataFrame):
    raise TypeError(f'data must be a path, a samples x genes DataFrame or an AnnData, '
                    f'got {type(data).__name__}')
  path = os.path.join(workdir, INPUT_FILE)
  fileio.write_table(path, data.T.rename_axis('probe'))
  return path


def find_landmarks(data: str | os.PathLike | pd.DataFrame | anndata.AnnData, k: int = 943,
                   config: ml_collections.ConfigDict | None = None,
                   workdir: str | None = None) -> pd.DataFrame:
  """Trains the AutoEncoder(s) on `data`, scores every gene with DeepLIFT and returns all
  genes ranked (the pipeline's train, explain and consensus stages; `--mode=explain`).

  data: a path to an expression file data.read_any reads, a samples x genes DataFrame
  (genes as HG-U133A probe IDs or gene symbols) or an AnnData. k: landmarks wanted (the
  run's `deeplift.top_k`). config: a run config (default configs/quick.py's, without its
  sample table); its data files are replaced by `data`. workdir: where the run writes (a new
  temporary folder by default; an earlier run of the same data and config is reused).

  Returns one row per gene, best first (by mean DeepLIFT rank over the seeds): rank, symbol,
  entrez, mean_rank, score (mean DeepLIFT score over the seeds) and in_L1000;
  `.attrs['workdir']` names the run.
  """
  if config is None:
    config = quick.get_config()
    config.data.samples_table = ()
  config = config.copy_and_resolve_references()
  workdir = workdir or tempfile.mkdtemp(prefix='landmark_')
  os.makedirs(workdir, exist_ok=True)
  config.data.studies = (_expression_file(data, workdir),)
  config.deeplift.top_k = k
  pipeline.run(config, workdir, mode='explain')
  ranking = ranking_lib.read_landmarks(os.path.join(workdir, pipeline.LANDMARKS_FILE))
  table = report.top_genes(ranking, len(ranking), config.data.l1000_landmarks)
  scores = [ranking_lib.read_landmarks(os.path.join(seed_dir, pipeline.LANDMARKS_FILE))
            .set_index('symbol')['score'] for _, seed_dir in pipeline.seed_runs(config, workdir)]
  table.insert(table.columns.get_loc('in_L1000'), 'score',
               pd.concat(scores, axis=1).mean(axis=1).reindex(table['symbol']).to_numpy())
  table.attrs['workdir'] = workdir
  return table


def design_panel(data: str | os.PathLike | pd.DataFrame | anndata.AnnData, k: int = 943,
                 studies: Sequence[str] | str | None = None,
                 config: ml_collections.ConfigDict | None = None,
                 workdir: str | None = None) -> pd.DataFrame:
  """Designs a k-gene panel from `data` with the panel designer (configs/panel.py:
  greedy ridge on per-study-centred, unit-sd genes; no AutoEncoder), the run's
  `--mode=explain`, and returns it ranked.

  data: a path to an expression file data.read_any reads, a samples x genes DataFrame
  (genes as HG-U133A probe IDs or gene symbols) or an AnnData. studies: the study (batch)
  of each sample, in order, or the name of an AnnData `obs` column holding it; profiles are
  centred within their study, and the ridge penalty is chosen on held-out groups of studies
  (with one study, give one penalty: `config.selectors.greedy_ridge_alphas`). config: a run
  config (default configs/panel.py's); its data files are replaced by `data`. workdir:
  where the run writes (a new temporary folder by default; a rerun reuses its stages).

  Returns k rows, best first: rank, symbol, entrez, probes, gain (the fraction of the
  training data's sum of squares the gene's step explained), in_l1000, shares_probe_with;
  `.attrs['workdir']` names the run (its panel.tsv and panel.gmt).
  """
  config = (config or panel_config.get_config()).copy_and_resolve_references()
  workdir = workdir or tempfile.mkdtemp(prefix='landmark_')
  os.makedirs(workdir, exist_ok=True)
  if isinstance(studies, str):
    if not _is_anndata(data) or studies not in data.obs:
      raise ValueError(f'studies={studies!r} names no obs column of an AnnData')
    studies = data.obs[studies].astype(str).tolist()
  config.data.studies = (_expression_file(data, workdir),)
  config.data.samples_table = ()
  if studies is not None:
    samples = (data.obs_names if _is_anndata(data) else data.index
               if isinstance(data, pd.DataFrame) else None)
    if samples is None or len(samples) != len(studies):
      raise ValueError(f'studies: {len(studies)} labels for '
                       f'{"a file" if samples is None else f"{len(samples)} samples"}; give one '
                       'per sample of a DataFrame or AnnData')
    path = os.path.join(workdir, STUDIES_FILE)
    fileio.write_table(path, pd.DataFrame({'sample': [str(s) for s in samples],
                                           'study': [str(s) for s in studies]}), index=False)
    config.data.samples_table = (path,)
  config.panel.k = k
  pipeline.run(config, workdir, mode='explain')
  table = pd.read_csv(os.path.join(workdir, pipeline.PANEL_FILE), sep='\t',
                      dtype={'symbol': str, 'entrez': str, 'probes': str,
                             'shares_probe_with': str}, keep_default_na=False, na_values={})
  table.attrs['workdir'] = workdir
  return table


def compare_panels(workdir: str) -> pd.DataFrame:
  """The calibrated comparison of a finished run (`panels.calibrated_comparisons` of its
  `panel_summary.tsv`): each panel of each model against L1000 and random panels, with z
  (gap ÷ its sd among random panels, positive = better) and the verdict in words."""
  path = os.path.join(workdir, 'panel_summary.tsv')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no panel summary; is {workdir} a finished run '
                            '(--mode=all or evaluate)?')
  return panels_lib.calibrated_comparisons(pd.read_csv(path, sep='\t'))
