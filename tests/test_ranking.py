"""Probe scores -> gene ranking -> landmarks -> L1000 overlap, on hand-made and real annotation."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from configs.common import data_path
from landmark.attribution import ranking
from landmark.data import readers

GPL96 = data_path('annotation', 'gpl96_probes.tsv')
L1000 = data_path('annotation', 'l1000_landmarks.tsv')
HEADER = 'probe\tgenbank\tsymbol\tentrez\ttitle\n'


@pytest.fixture
def small_annotation(tmp_path):
  path = tmp_path / 'probes.tsv'
  path.write_text(HEADER + ''.join('\t'.join(row) + '\n' for row in [
      ('p1', 'X1', 'A', '1', 'gene a'),
      ('p2', 'X2', 'A', '1', 'gene a'),
      ('p3', 'X3', 'B /// C', '3 /// 2', 'gene b /// gene c'),
      ('p4', 'X4', '', '', ''),
      ('p5', 'X5', 'D', '4', 'gene d'),
      ('p6', 'X6', 'E', '5', 'gene e'),
  ]))
  return readers.read_probe_annotation(path)


@pytest.fixture(scope='module')
def gpl96():
  return readers.read_probe_annotation(GPL96)


def test_gene_score_is_max_over_probes_and_multi_gene_probes_count_for_each(small_annotation):
  scores = {'p1': 0.2, 'p2': 0.9, 'p3': 0.5, 'p4': 1.0, 'p5': 0.5, 'p6': 0.1}
  ranked = ranking.rank_genes(list(scores.values()), list(scores), small_annotation)
  assert list(ranked.columns) == ['rank', 'symbol', 'entrez', 'probes', 'score']
  # p4 has no symbol; B, C and D tie at 0.5 and are ordered by symbol.
  assert ranked.symbol.tolist() == ['A', 'B', 'C', 'D', 'E']
  assert ranked['rank'].tolist() == [1, 2, 3, 4, 5]
  assert ranked.score.tolist() == [0.9, 0.5, 0.5, 0.5, 0.1]
  assert ranked.probes.tolist() == ['p2,p1', 'p3', 'p3', 'p5', 'p6']
  # The symbol and Entrez lists of a multi-gene probe do not pair up: no Entrez ID there.
  assert ranked.entrez.tolist() == ['1', '', '', '4', '5']
  assert ranking.select_landmarks(ranked, k=2) == ['A', 'B']


def test_gene_scores_on_real_annotation_match_a_plain_loop(gpl96):
  scores = np.random.default_rng(0).uniform(size=len(gpl96))
  ranked = ranking.rank_genes(scores, gpl96.probe, gpl96)
  best = {}
  for score, field in zip(scores, gpl96.symbol):
    for symbol in field.split('///'):
      if symbol.strip():
        best[symbol.strip()] = max(best.get(symbol.strip(), -1.0), score)
  assert len(ranked) == len(best)
  np.testing.assert_array_equal(ranked.score, [best[s] for s in ranked.symbol])
  assert np.all(np.diff(ranked.score) <= 0)
  assert ranked['rank'].tolist() == list(range(1, len(best) + 1))


def test_l1000_probes_map_to_l1000_symbols(gpl96):
  l1000 = pd.read_csv(L1000, sep='\t', dtype=str)
  scores = gpl96.probe.isin(l1000.probe).to_numpy(float)
  ranked = ranking.rank_genes(scores, gpl96.probe, gpl96)
  top = set(ranked.symbol[ranked.score == 1.0])
  assert np.mean(l1000.symbol.isin(top)) > 0.95


def test_gene_symbol_features(small_annotation):
  ranked = ranking.rank_genes([0.3, 0.7, 0.1], ['A', 'C', 'ZZZ'], small_annotation)
  assert ranked.symbol.tolist() == ['C', 'A', 'ZZZ']
  assert ranked.probes.tolist() == ['p3', 'p1,p2', '']


def test_errors_name_the_file(tmp_path, small_annotation):
  with pytest.raises(ValueError, match='probes.tsv.*none of the 2 feature IDs'):
    ranking.rank_genes([1.0, 2.0], ['nope_at', 'other_at'], small_annotation)
  with pytest.raises(ValueError, match='missing.tsv.*not found'):
    readers.read_probe_annotation(tmp_path / 'missing.tsv')
  (tmp_path / 'empty.tsv').write_text('')
  with pytest.raises(ValueError, match='empty.tsv.*empty'):
    readers.read_probe_annotation(tmp_path / 'empty.tsv')
  (tmp_path / 'header.tsv').write_text(HEADER)
  with pytest.raises(ValueError, match='header.tsv.*no rows'):
    readers.read_probe_annotation(tmp_path / 'header.tsv')
  with pytest.raises(ValueError, match='Cannot select 10'):
    ranking.select_landmarks(ranking.rank_genes([1.0], ['p1'], small_annotation), k=10)


def test_l1000_overlap_by_hand(tmp_path):
  genes = [f'G{i}' for i in range(20)]
  ranked = pd.DataFrame({'rank': range(1, 21), 'symbol': genes,
                         'entrez': [str(100 + i) for i in range(20)], 'probes': '', 'score': 0.0})
  table = tmp_path / 'l1000.tsv'
  # G1 by symbol, G2 renamed (matched by Entrez), G3 by symbol, G15 outside the top 5, X not ranked.
  table.write_text('probe\tentrez\tsymbol\ttitle\n' + ''.join(
      f'{p}\t{e}\t{s}\t\n' for p, e, s in
      [('a', '101', 'G1'), ('b', '102', 'OLD2'), ('c', '', 'G3'), ('d', '115', 'G15'),
       ('e', '999', 'X')]))
  landmarks = ranking.select_landmarks(ranked, k=5)
  result = ranking.l1000_overlap(landmarks, table, ranked)
  assert result['count'] == 3 and result['symbols'] == ['G1', 'G2', 'G3']
  assert result['n_l1000_in_universe'] == 4 and result['n_universe'] == 20
  assert result['expected'] == pytest.approx(5 * 4 / 20)
  by_hand = sum(math.comb(4, k) * math.comb(16, 5 - k) for k in range(3, 5)) / math.comb(20, 5)
  assert result['p_value'] == pytest.approx(by_hand)
  assert result['p_value'] == pytest.approx(stats.hypergeom.sf(2, 20, 4, 5))


def test_write_landmarks_round_trip(tmp_path, small_annotation):
  ranked = ranking.rank_genes([0.2, 0.9, 0.5], ['p1', 'p3', 'p5'], small_annotation)
  ranking.write_landmarks(tmp_path / 'landmarks.tsv', ranked)
  back = pd.read_csv(tmp_path / 'landmarks.tsv', sep='\t', dtype={'entrez': str},
                     keep_default_na=False)
  pd.testing.assert_frame_equal(back, ranked, check_dtype=False)


def test_consensus_is_the_mean_rank_over_seeds(small_annotation):
  probes = small_annotation.probe.to_numpy()
  rng = np.random.default_rng(3)
  rankings = [ranking.rank_genes(rng.normal(size=len(probes)), probes, small_annotation)
              for _ in range(3)]
  consensus = ranking.consensus_ranking(rankings)
  by_hand = pd.concat([r.set_index('symbol')['rank'] for r in rankings], axis=1).mean(axis=1)
  np.testing.assert_allclose(consensus.set_index('symbol')['mean_rank'],
                             by_hand.reindex(consensus.symbol))
  assert (np.diff(consensus['mean_rank']) >= 0).all()
  np.testing.assert_array_equal(consensus['rank'], np.arange(1, len(consensus) + 1))
  assert set(consensus.symbol) == set(rankings[0].symbol)
  single = ranking.consensus_ranking(rankings[:1])
  assert single.symbol.tolist() == rankings[0].symbol.tolist()
  assert (single['rank_sd'] == 0).all()
  with pytest.raises(ValueError, match='same genes'):
    ranking.consensus_ranking([rankings[0], rankings[1].iloc[1:]])


def test_assay_panel_flags_l1000_genes_and_shared_probe_sets(tmp_path):
  annotation = pd.DataFrame({'probe': ['p1', 'p2', 'p3', 'p4'],
                             'symbol': ['A /// B', 'C', 'D', 'E'],
                             'entrez': ['1 /// 2', '3', '4', '5']})
  ranked = ranking.rank_genes(np.array([0.9, 0.8, 0.7, 0.1]), ['p1', 'p2', 'p3', 'p4'], annotation)
  l1000 = tmp_path / 'l1000.tsv'
  l1000.write_text('probe\tentrez\tsymbol\ttitle\nx\t3\tC_OLD_NAME\tc\ny\t9\tD\td\n')
  panel = ranking.assay_panel(ranked, 4, str(l1000))
  assert panel['symbol'].tolist() == ['A', 'B', 'C', 'D']
  assert panel['in_l1000'].tolist() == [False, False, True, True]   # C by Entrez, D by symbol
  assert panel['shares_probe_with'].tolist() == ['B', 'A', '', '']
  ranking.write_gmt(tmp_path / 'panels.gmt', {'top': ['A', 'B']}, 'test panel')
  assert (tmp_path / 'panels.gmt').read_text() == 'top\ttest panel\tA\tB\n'
