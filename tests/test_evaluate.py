"""Evaluation against scipy/numpy references, planted signals and the real GO / L1000 files."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from configs import common
from landmark.evaluation import evaluate

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def assert_png(path):
  with open(path, 'rb') as f:
    assert f.read(8) == PNG_SIGNATURE
  assert path.stat().st_size > 1000


def test_paired_comparison_matches_scipy_and_counts_wins():
  a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
  b = np.array([2.0, 2.0, 1.0, 5.0, 3.0, 6.5])
  result = evaluate.paired_comparison(a, b, lower_is_better=True)
  t_test, wilcoxon = stats.ttest_rel(a, b), stats.wilcoxon(a, b)
  assert result['t_statistic'] == pytest.approx(t_test.statistic)
  assert result['t_p_value'] == pytest.approx(t_test.pvalue)
  assert result['wilcoxon_statistic'] == pytest.approx(wilcoxon.statistic)
  assert result['wilcoxon_p_value'] == pytest.approx(wilcoxon.pvalue)
  assert result['mean_difference'] == pytest.approx(np.mean(a - b))
  assert (result['a_wins'], result['b_wins'], result['ties']) == (3, 2, 1)
  higher = evaluate.paired_comparison(a, b, lower_is_better=False)
  assert (higher['a_wins'], higher['b_wins'], higher['ties']) == (2, 3, 1)


def metrics_table(targets, mae, pcc, p_value):
  return pd.DataFrame({'mae': mae, 'pcc': pcc, 'p_value': p_value},
                      index=pd.Index(targets, name='target'))


def test_compare_landmark_sets_uses_common_targets():
  rng = np.random.default_rng(4)
  genes = [f'G{i}' for i in range(40)]
  # A's targets are G0..G34, B's are G5..G39: common targets G5..G34.
  a = metrics_table(genes[:35], rng.uniform(0.1, 0.5, 35), rng.uniform(0.3, 1, 35),
                    np.full(35, 0.001))
  b = metrics_table(genes[5:], rng.uniform(0.1, 0.6, 35), rng.uniform(0.2, 1, 35),
                    np.full(35, 0.001))
  b.loc[['G10', 'G12'], 'p_value'] = 0.5
  a.loc['G2', 'p_value'] = 0.5       # not a common target: ignored
  summary, failing = evaluate.compare_landmark_sets(a, b, names=('D1000', 'L1000'))
  common = genes[5:35]
  for metric, lower_is_better in (('mae', True), ('pcc', False)):
    row = summary.set_index('metric').loc[metric]
    expected = evaluate.paired_comparison(a.loc[common, metric], b.loc[common, metric],
                                          lower_is_better)
    assert row['n_genes'] == 30
    for key, value in expected.items():
      assert row[key] == pytest.approx(value)
    assert row['min_b'] == b.loc[common, metric].min()
    assert (row['permutation_fail_a'], row['permutation_fail_b']) == (0, 2)
  assert failing['set'].tolist() == ['L1000', 'L1000']
  assert failing['target'].tolist() == ['G10', 'G12']


def test_calibrated_gap_separates_planted_signal_from_noise():
  rng = np.random.default_rng(6)
  random_sets = [rng.normal(0.5, 0.1, 500) for _ in range(20)]
  informative = rng.normal(0.45, 0.1, 500)     # 0.05 lower MAE, ~8 null sds
  planted = evaluate.calibrated_gap(informative, rng.normal(0.5, 0.1, 500), random_sets)
  assert planted['gap'] < 0 and planted['z'] < -4
  assert planted['p_value'] == pytest.approx(1 / (1 + 20 * 19))
  assert planted['null_mean'] == pytest.approx(0.0, abs=1e-12)   # ordered pairs: symmetric
  # Two more random sets, 30 times over: z behaves like a standard score.
  chance = np.array([
      evaluate.calibrated_gap(rng.normal(0.5, 0.1, 500), rng.normal(0.5, 0.1, 500),
                              random_sets)['z'] for _ in range(30)])
  assert np.abs(chance).max() < 4 and np.mean(np.abs(chance) < 2) >= 0.7
  assert abs(chance.mean()) < 0.75


@pytest.fixture
def small_gmt(tmp_path):
  lines = [
      ['T1', 'ten after restriction'] + [f'G{i}' for i in range(1, 11)] + ['X1', 'X2'],
      ['T2', 'too small'] + ['G1', 'G2'],
      ['T3', 'too large'] + [f'G{i}' for i in range(1, 16)],
      ['T4', 'six'] + [f'G{i}' for i in range(20, 26)],
      ['T5', 'no selected gene'] + [f'G{i}' for i in range(30, 35)],
      ['T6', 'eight'] + [f'G{i}' for i in range(5, 13)],
  ]
  path = tmp_path / 'small.gmt'
  path.write_text(''.join('\t'.join(line) + '\n' for line in lines))
  return path


def test_read_gmt(small_gmt):
  gene_sets = evaluate.read_gmt(small_gmt)
  assert list(gene_sets) == ['T1', 'T2', 'T3', 'T4', 'T5', 'T6']
  assert gene_sets['T2'] == ('too small', {'G1', 'G2'})


def test_go_enrichment_matches_hypergeometric_and_hand_bh(small_gmt):
  gene_sets = evaluate.read_gmt(small_gmt)
  universe = [f'G{i}' for i in range(1, 41)] + ['Z1']   # Z1 and G16..: in no term
  selected = [f'G{i}' for i in range(1, 7)] + ['G20', 'Q9', 'Z1']
  table = evaluate.go_enrichment(selected, universe, gene_sets, min_size=3, max_size=12)
  # Annotated universe: G1..G15, G20..G25, G30..G34 = 26 genes; selection in it: 7 genes.
  n_universe, n_selected = 26, 7
  expected = {'T1': (10, ['G1', 'G2', 'G3', 'G4', 'G5', 'G6']), 'T4': (6, ['G20']),
              'T6': (8, ['G5', 'G6'])}
  assert sorted(table['term']) == sorted(expected)
  for term, (size, overlap) in expected.items():
    row = table.set_index('term').loc[term]
    assert row['set_size'] == size and row['overlap'] == len(overlap)
    assert row['genes'] == '/'.join(overlap)
    assert row['expected'] == pytest.approx(size * n_selected / n_universe)
    assert row['p_value'] == pytest.approx(
        stats.hypergeom.sf(len(overlap) - 1, n_universe, size, n_selected))
  p = table['p_value'].to_numpy()
  assert (np.diff(p) >= 0).all()
  m = len(p)
  by_hand = np.minimum.accumulate((p * m / np.arange(1, m + 1))[::-1])[::-1]
  np.testing.assert_allclose(table['p_adjusted'], np.minimum(by_hand, 1.0))
  nothing = evaluate.go_enrichment(['Q9', 'Z1'], universe, gene_sets, min_size=3, max_size=12)
  assert nothing.empty and nothing.columns.tolist() == table.columns.tolist()


def test_go_enrichment_of_real_l1000_landmarks():
  gene_sets = evaluate.read_gmt(common.data_path('genesets', 'go_mf.gmt'))
  landmarks = pd.read_csv(common.data_path('annotation', 'l1000_landmarks.tsv'), sep='\t')
  probes = pd.read_csv(common.data_path('annotation', 'gpl96_probes.tsv'), sep='\t')
  universe = {s.strip() for entry in probes['symbol'].dropna() for s in entry.split('///')}
  table = evaluate.go_enrichment(landmarks['symbol'], universe, gene_sets)
  assert 300 < len(table) < 2000      # GO MF: 4,964 terms; the paper tested 1,645
  assert table['p_value'].between(0, 1).all() and table['p_adjusted'].between(0, 1).all()
  assert (table['p_adjusted'] >= table['p_value'] - 1e-15).all()
  assert table['p_value'].is_monotonic_increasing
  assert table['set_size'].between(10, 500).all() and (table['overlap'] >= 1).all()
  assert (table['overlap'] <= table['set_size']).all()
  # Landmarks were chosen to span biology, so some function is over-represented.
  assert (table['p_adjusted'] < 0.05).any()


def planted_clusters(rng, n_per_class=20, n_features=50, noise=0.2):
  centroids = rng.normal(size=(3, n_features))
  labels = np.repeat(['normal', 'ADC', 'SCC'], n_per_class)
  index = np.repeat(np.arange(3), n_per_class)
  return centroids[index] + noise * rng.normal(size=(len(labels), n_features)), labels


def test_clustering_recovers_planted_clusters_and_not_random_labels():
  rng = np.random.default_rng(7)
  features, labels = planted_clusters(rng)
  scores = evaluate.cluster_scores(features, labels)
  assert scores['ari'] == pytest.approx(1.0) and scores['nmi'] == pytest.approx(1.0)
  random_labels = rng.permutation(labels)
  assert abs(evaluate.cluster_scores(features, random_labels)['ari']) < 0.1


def test_compare_representations(tmp_path):
  rng = np.random.default_rng(8)
  features, labels = planted_clusters(rng)
  representations = {'raw': features, 'pca': evaluate.pca_features(features, 5),
                     'noise': rng.normal(size=(len(labels), 5))}
  table = evaluate.compare_representations(representations, labels)
  assert table['representation'].tolist() == ['raw', 'pca', 'noise']
  assert table['dims'].tolist() == [50, 5, 5]
  scores = table.set_index('representation')
  assert scores.loc['raw', 'ari'] == pytest.approx(1.0)
  assert scores.loc['noise', 'ari'] < 0.5
  evaluate.plot_representations(tmp_path / 'representations.png', representations, labels,
                                'planted')
  assert_png(tmp_path / 'representations.png')


def test_run_name_is_the_folder_of_the_figure(tmp_path):
  assert evaluate.run_name(tmp_path / 'demo' / 'fig3_linear.png') == 'demo'
  assert evaluate.run_name(tmp_path / 'demo' / 'seed_2' / 'ae_density.png') == 'demo/seed_2'


def test_plots_write_png(tmp_path, small_gmt):
  rng = np.random.default_rng(9)
  evaluate.plot_density(tmp_path / 'density.png',
                        {'MAE': rng.gamma(2, 0.1, 300), 'PCC': np.full(10, 0.2)}, 'planted')
  assert_png(tmp_path / 'density.png')
  genes = [f'G{i}' for i in range(50)]
  a = metrics_table(genes, rng.uniform(0.1, 0.5, 50), rng.uniform(0, 1, 50), np.full(50, 0.01))
  b = metrics_table(genes, rng.uniform(0.1, 0.6, 50), rng.uniform(0, 1, 50), np.full(50, 0.01))
  evaluate.plot_comparison(tmp_path / 'comparison.png', a, b, ('D1000', 'L1000'), 'linear')
  assert_png(tmp_path / 'comparison.png')
  table = evaluate.go_enrichment([f'G{i}' for i in range(1, 11)], [f'G{i}' for i in range(1, 41)],
                                 evaluate.read_gmt(small_gmt), min_size=3, max_size=12)
  assert (table['p_adjusted'] < 0.05).any()
  evaluate.plot_enrichment(tmp_path / 'enrichment.png', table, 'D1000')
  assert_png(tmp_path / 'enrichment.png')
  evaluate.plot_enrichment(tmp_path / 'none.png', table.assign(p_adjusted=1.0), 'D1000')
  assert_png(tmp_path / 'none.png')
