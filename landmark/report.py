"""The run's Markdown report: what came out, beside the paper's figures and the noise floor."""

import json
import os

import pandas as pd

from landmark import fileio

PAPER_AE = {'mean_mae': 0.2222, 'mean_pcc': 0.7627, 'pass_fraction': 21696 / 22268}


def _table(frame, floatfmt='.4g'):
  """A DataFrame as a Markdown table (no tabulate dependency)."""
  def cell(value):
    if isinstance(value, float):
      return format(value, floatfmt)
    return str(value)
  lines = ['| ' + ' | '.join(map(str, frame.columns)) + ' |',
           '|' + '---|' * len(frame.columns)]
  lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in frame.itertuples(index=False)]
  return '\n'.join(lines)


def _verdict(row):
  """One sentence on a DeepLIFT-vs-L1000 gap, judged against the random-panel null."""
  better = 'lower' if row['metric'] == 'mae' else 'higher'
  z = row.get('null_z')
  noise = ('no random-panel null (too few random panels)' if pd.isna(z) else
           f"random-panel gaps have sd {row['null_sd']:.4f}, so z = {z:+.2f}, "
           f"empirical p = {row['null_p_value']:.3g}")
  return (f"- {row['model']}, per-gene {row['metric'].upper()} ({better} is better): "
          f"{row['set_a']} {row['mean_a']:.4f} vs {row['set_b']} {row['mean_b']:.4f} on "
          f"{row['n_genes']} common targets; paired t p = {row['t_p_value']:.3g}, Wilcoxon p = "
          f"{row['wilcoxon_p_value']:.3g}; {row['set_a']} wins {row['a_wins']} genes, "
          f"{row['set_b']} {row['b_wins']}; {noise}.")


def _spread(quality, figure, fmt='.4f'):
  """'mean ± sd' of a per-seed figure of `ae_summary.json` (just the mean for one seed)."""
  if len(quality['seeds']) == 1:
    return format(quality[figure], fmt)
  return f"{quality[figure]:{fmt}} ± {quality[figure + '_sd']:{fmt}}"


def _seed_stability(ranking, k):
  """How alike the seeds' top-k gene sets are: mean pairwise overlap, as a sentence."""
  columns = [c for c in ranking.columns if c.startswith('rank_') and c[len('rank_'):].isdigit()]
  if len(columns) < 2:
    return ''
  tops = [set(ranking.symbol[ranking[c] <= k]) for c in columns]
  shared = [len(a & b) for i, a in enumerate(tops) for b in tops[i + 1:]]
  return (f"The {len(columns)} seeds' own top {k} genes share {sum(shared) / len(shared):.0f} "
          f"genes per pair on average ({min(shared)}–{max(shared)}); all seeds agree on "
          f"{len(set.intersection(*tops))}.")


def _seed_panels(summary):
  """The per-seed DeepLIFT panels' figures as mean ± sd over seeds, per model."""
  seeds = summary[summary['panel'].str.startswith('deeplift_seed_')]
  return ', '.join(
      f"{kind} mean PCC {g['pcc_mean'].mean():.4f} ± {g['pcc_mean'].std():.4f} "
      f"(z against random {g['pcc_z_random'].mean():+.2f} ± {g['pcc_z_random'].std():.2f}), "
      f"mean MAE {g['mae_mean'].mean():.4f} ± {g['mae_mean'].std():.4f}"
      for kind, g in seeds.groupby('model'))


def _reconstruction_rows(quality, n_seeds):
  """Rows of the reconstruction table: this run, its baselines on the same profiles (PCA of
  each width fitted on the training split, the mean profiles) and the paper."""
  baselines = quality['baselines']
  rows = [{'': f"this run ({n_seeds} seed{'s' * (n_seeds > 1)}, mean ± sd)",
           'mean per-gene MAE': _spread(quality, 'mean_mae'),
           'mean per-gene PCC': _spread(quality, 'mean_pcc'),
           'pass permutation test': f"{quality['n_pass'] / quality['n_features']:.1%}"}]
  for name, pca in baselines.get('pca', {}).items():
    rows.append({'': f"PCA, {pca['components']} components ({name})",
                 'mean per-gene MAE': pca['mae'], 'mean per-gene PCC': pca['pcc'],
                 'pass permutation test': ''})
  rows += [{'': 'per-study mean profile', 'mean per-gene MAE': baselines['study_mean_mae'],
            'mean per-gene PCC': '', 'pass permutation test': ''},
           {'': 'paper (11,100 GEO profiles)', 'mean per-gene MAE': PAPER_AE['mean_mae'],
            'mean per-gene PCC': PAPER_AE['mean_pcc'],
            'pass permutation test': f"{PAPER_AE['pass_fraction']:.1%}"}]
  return pd.DataFrame(rows)


def write_report(config, workdir, quality, ranking, panels, go_tables, clustering):
  """Writes `<workdir>/report.md` linking every figure of the run."""
  with open(os.path.join(workdir, 'data_summary.json')) as f:
    data_summary = json.load(f)
  with open(os.path.join(workdir, 'l1000_overlap.json')) as f:
    overlap = json.load(f)
  k = config.deeplift.top_k
  n_seeds = len(quality['seeds'])
  summary = panels['summary']
  seed_line = (f"Each of the {n_seeds} seeds' own DeepLIFT panel (`deeplift_seed_<s>`), as mean "
               f"± sd over seeds: {_seed_panels(summary)}." if n_seeds > 1 else '')
  comparisons = panels['comparisons']
  split_sizes = ', '.join(f"{name} {split['samples']} profiles" for name, split in data_summary.items())
  lines = [
      '# landmark run report', '',
      f"Data: {split_sizes}; "
      f"{data_summary['train']['features']} probes; studies {data_summary['train']['studies']}.", '',
      '## AutoEncoder reconstruction (held-out test split, original units)', '',
      _table(_reconstruction_rows(quality, n_seeds)), '',
      'PCA is fitted on the training split and reconstructs each held-out profile from its '
      'projection: the linear AE of that width, which the AE should at least match.', '',
      f"Against the baselines on the same profiles: {quality['baselines']['verdict']}.", '',
      f"![per-gene MAE and PCC, seed {quality['seeds'][0]}](seed_{quality['seeds'][0]}/ae_density.png)",
      '',
      '## DeepLIFT landmarks', '',
      f"`landmarks.tsv` ranks all {len(ranking)} genes by their mean DeepLIFT rank over the "
      f"{n_seeds} seeds (each seed's own ranking, with scores, is `seed_<s>/landmarks.tsv`). "
      f"{_seed_stability(ranking, k)} The top {k} share {overlap['count']} "
      f"genes with L1000's 978 landmarks (expected by chance {overlap['expected']:.1f}, "
      f"hypergeometric p = {overlap['p_value']:.3g}; the paper's list shared 129).", '',
      'Top 20: ' + ', '.join(ranking['symbol'].head(20)), '',
      '## Inferring target genes from a panel', '',
      f"Panels of {panels['panel_size']} genes inside D-GEX's gene universe "
      f"({panels['n_genes']} genes present): DeepLIFT's consensus top genes (and each seed's), "
      "L1000's landmarks, the most "
      f"variable genes, and {config.evaluate.random_sets} random panels (the noise floor). "
      f"Models trained on the training split, scored on the {data_summary['test']['samples']} "
      f"held-out profiles over {panels['n_targets']} common target genes. `*_z_random`: "
      'distance from the random panels in their standard deviations.', '',
      _table(summary[~summary['panel'].str.startswith('random_')]), '',
      seed_line, '',
      'Random panels: ' + ', '.join(
          f"{kind} mean PCC {g['pcc_mean'].mean():.4f} ± {g['pcc_mean'].std():.4f}, "
          f"mean MAE {g['mae_mean'].mean():.4f} ± {g['mae_mean'].std():.4f} ({len(g)} panels)"
          for kind, g in summary[summary['panel'].str.startswith('random_')].groupby('model')), '',
      'How much of each panel\'s genes\' variance is explained by study (median η², training '
      f'split, after study correction `{config.preprocess.study_correction}`), and its mean '
      'expression:', '',
      _table(panels['study_effects'][~panels['study_effects']['panel'].str.startswith('random_')]),
      '',
      '### DeepLIFT vs L1000', '',
      *[_verdict(row) for _, row in comparisons[(comparisons['set_a'] == 'deeplift') &
                                                (comparisons['set_b'] == 'l1000')].iterrows()], '',
      'All pairs: `panel_comparisons.tsv`; per-gene metrics: `panel_gene_metrics.tsv`.', '',
      *[f'![Fig. 3, {kind}](fig3_{kind}.png)' for kind in config.evaluate.models], '',
      '## GO molecular-function enrichment', '',
      *[f"- {name}: {int((t['p_adjusted'] < config.evaluate.go_fdr).sum())} of {len(t)} tested "
        f"terms significant (BH < {config.evaluate.go_fdr}); top: "
        f"{', '.join(t['name'].head(3))}" for name, t in go_tables.items()], '',
      '![GO enrichment of the DeepLIFT landmarks](go_deeplift.png)', '',
      '## Clustering labelled samples', '',
      'Hierarchical clustering (average linkage, correlation distance) of each labelled study, '
      'scored against its labels:', '',
      _table(clustering) if len(clustering) else 'No study has labels of two or more classes.',
      '',
      *[f'![clustering]({name})' for name in sorted(os.listdir(workdir))
        if name.startswith('clustering_') and name.endswith('.png')], '',
  ]
  fileio.write_text(os.path.join(workdir, 'report.md'), '\n'.join(lines))
