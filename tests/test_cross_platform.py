"""The cross-platform experiment on a slice of the real rnaseq/ files (1,500 genes, 24 lines)
and 120 real compendium profiles: the rank mapping, the calibrated z and one whole run."""

import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from configs import common
from configs import cross_platform as cross_config
from experiments import cross_platform
from landmark.inference import regression


def _slice(path, out):
  table = pd.read_csv(path, sep='\t', dtype={'entrez': str}, nrows=1500).iloc[:, :25]
  table.to_csv(out, sep='\t', index=False)
  return str(out)


@pytest.fixture(scope='module')
def experiment(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('cross_platform')
  config = cross_config.get_config(f'random_sets=3,landmarks={cross_config.COMMITTED_LANDMARKS}')
  config.data.max_samples = 120
  for name in ('rnaseq', 'array'):
    config.cross_platform[name] = _slice(config.cross_platform[name], tmp / f'{name}.tsv.gz')
  workdir = str(tmp / 'out')
  return config, workdir, cross_platform.run(config, workdir)


def test_read_lines_keeps_the_first_row_of_a_repeated_entrez_id(tmp_path):
  path = tmp_path / 'lines.tsv'
  path.write_text('entrez\tA\tB\n7\t1\t2\n9\t3\t4\n7\t5\t6\n')
  lines = cross_platform.read_lines(str(path))
  assert list(lines.features) == ['7', '9'] and list(lines.samples) == ['A', 'B']
  np.testing.assert_array_equal(lines.values, [[1, 3], [2, 4]])


def test_each_line_lands_exactly_on_the_compendium_quantiles_in_its_own_order(experiment):
  _, _, result = experiment
  lines, train = result.lines, result.data.train
  reference = np.sort(train, axis=1).mean(axis=0, dtype=np.float64).astype(np.float32)
  np.testing.assert_array_equal(lines.reference, reference)
  for mapped, measured in ((lines.rnaseq_mapped, lines.rnaseq),
                           (lines.array_mapped, lines.array)):
    np.testing.assert_array_equal(np.sort(mapped, axis=1), np.broadcast_to(reference,
                                                                           mapped.shape))
    for line in range(len(mapped)):   # ranks kept: mapped values rise with the measured ones
      order = np.argsort(measured[line], kind='stable')
      assert np.all(np.diff(mapped[line, order]) >= 0)


def test_each_gene_is_found_by_its_entrez_id(experiment):
  _, _, result = experiment
  lines = result.lines
  counts = pd.read_csv(common.data_path('rnaseq', 'pickrell_lcl_rnaseq_counts.tsv.gz'),
                       sep='\t', nrows=1500, dtype={'entrez': str}).iloc[:, :25]
  counts = counts.drop_duplicates('entrez').set_index('entrez')
  annotation = pd.read_csv(common.data_path('annotation', 'gpl96_probes.tsv'), sep='\t',
                           dtype=str)
  assert len(lines.genes) > 800 and len(lines.rnaseq) == 24
  for j in (0, len(lines.genes) // 2, len(lines.genes) - 1):
    entrez = set(annotation.loc[annotation['symbol'] == lines.genes[j], 'entrez'])
    (row,) = entrez & set(counts.index)
    np.testing.assert_allclose(lines.rnaseq[:, j],
                               np.log2(counts.loc[row].to_numpy(np.float64) + 1), rtol=1e-6)


def test_the_mapped_rnaseq_tracks_the_same_lines_array_values(experiment):
  _, _, result = experiment
  medians = result.mapping.median()
  assert medians['r_mapped'] > medians['r_shuffled'] + 0.1
  assert abs(medians['r_shuffled']) < 0.05
  np.testing.assert_allclose(
      result.mapping['r_mapped'].iloc[:5],
      [stats.pearsonr(result.lines.array[:, j], result.lines.rnaseq_mapped[:, j])[0]
       for j in range(5)], atol=1e-6)


def test_calibrated_z_on_a_tiny_case():
  randoms = {'pcc_mean': [0.30, 0.32, 0.35, 0.31], 'mae_centred_mean': [0.50, 0.52, 0.49, 0.51]}
  named = {'deeplift': (0.36, 0.47), 'l1000': (0.33, 0.50), 'variance': (0.29, 0.55)}
  summary = pd.DataFrame(
      [{'model': 'rnaseq', 'panel': f'random_{i}', 'pcc_mean': p, 'mae_centred_mean': m}
       for i, (p, m) in enumerate(zip(*randoms.values()))]
      + [{'model': 'rnaseq', 'panel': name, 'pcc_mean': p, 'mae_centred_mean': m}
         for name, (p, m) in named.items()])
  table = cross_platform.comparison_table(summary).set_index('panel')
  assert list(table.index) == ['deeplift', 'l1000', 'variance']
  for metric, column, sign in (('pcc', 'pcc_mean', 1), ('mae_centred', 'mae_centred_mean', -1)):
    band = np.array(randoms[column])
    pairs = (band[:, None] - band[None, :])[~np.eye(4, dtype=bool)]
    for panel, values in named.items():
      value = values[0 if metric == 'pcc' else 1]
      assert table.loc[panel, f'{metric}_random_mean'] == pytest.approx(band.mean())
      assert table.loc[panel, f'{metric}_random_sd'] == pytest.approx(np.std(band, ddof=1))
      assert table.loc[panel, f'{metric}_z_random'] == pytest.approx(
          sign * (value - band.mean()) / np.std(band, ddof=1))
      if panel != 'l1000':
        gap = value - named['l1000'][0 if metric == 'pcc' else 1]
        assert table.loc[panel, f'{metric}_z_l1000'] == pytest.approx(
            sign * gap / np.std(pairs, ddof=1))
  assert np.isnan(table.loc['l1000', 'pcc_z_l1000'])
  assert (table.loc['deeplift', 'pcc_z_random'] > 0
          and table.loc['deeplift', 'mae_centred_z_random'] > 0)


def test_a_whole_run_scores_rnaseq_landmarks_against_the_array(experiment):
  config, workdir, result = experiment
  for name in ('mapping.tsv', 'mapping.png', 'cross_platform.tsv', 'cross_platform_panels.tsv',
               'cross_platform.png', 'summary.md'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  panels, data, lines = result.panels, result.data, result.lines
  k = len(panels['l1000'])
  assert {len(p) for p in panels.values()} == {k} and 20 < k < 300
  assert len([p for p in panels if p.startswith('random_')]) == 3
  assert not set(result.targets) & set().union(panels['deeplift'], panels['l1000'],
                                                panels['variance'])
  summary = result.summary.set_index(['model', 'panel'])
  assert summary.loc[('rnaseq', 'deeplift'), 'targets'] == len(result.targets)
  # deeplift's RNA-seq row, recomputed: ridge on the compendium, RNA-seq in, array truth.
  x, y = data.columns(panels['deeplift']), data.columns(result.targets)
  model = regression.fit_ridge(data.train[:, x], data.train[:, y], data.val[:, x],
                               data.val[:, y], config.evaluate.ridge_grid)
  predicted = model.predict(lines.rnaseq_mapped[:, x])
  truth = lines.array_mapped[:, y]
  pcc = [stats.pearsonr(truth[:, j], predicted[:, j])[0] for j in range(len(y))]
  assert summary.loc[('rnaseq', 'deeplift'), 'pcc_mean'] == pytest.approx(np.mean(pcc), abs=1e-5)
  centred = np.abs((truth - truth.mean(0)) - (predicted - predicted.mean(0))).mean()
  assert summary.loc[('rnaseq', 'deeplift'), 'mae_centred_mean'] == pytest.approx(centred,
                                                                                  rel=1e-5)
  table = pd.read_csv(os.path.join(workdir, 'cross_platform.tsv'), sep='\t')
  assert list(zip(table['input'], table['panel'])) == [
      (source, panel) for source in ('rnaseq', 'array') for panel in ('deeplift', 'l1000',
                                                                      'variance')]
  assert 'Cross-platform test' in open(os.path.join(workdir, 'summary.md')).read()
