"""The run's Markdown report: the verdict on its panels first, then what came out beside
the paper's figures and the noise floor."""

import json
import os
from typing import Any, Mapping

import ml_collections
import pandas as pd

from landmark import fileio
from landmark.attribution import ranking as ranking_lib
from landmark.evaluation import evaluate
from landmark.evaluation import panels as panels_lib

PAPER_AE = {'mean_mae': 0.2222, 'mean_pcc': 0.7627, 'pass_fraction': 21696 / 22268}
PAPER_PROFILES = 111009   # the paper's GEO compendium after duplicate removal
TOP_GENES = 20   # rows of the report's top-genes table


def _table(frame, floatfmt='.4g'):
  """A DataFrame as a Markdown table (no tabulate dependency)."""
  def cell(value: Any) -> str:
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


def _link(workdir, path, text, image=False):
  """A Markdown link (or image) to `path` under `workdir`, or `path` as code with a note when
  the run did not write it: the report never links a missing file."""
  if not os.path.exists(os.path.join(workdir, path)):
    return f'`{path}` (not written by this run)'
  return f"{'!' * image}[{text}]({path})"


def _verdict_tables(workdir, summary):
  """Per model: each named panel against L1000 and random panels in words, and the headline
  figure (drawn here: `headline_<model>.png`)."""
  comparisons = panels_lib.calibrated_comparisons(summary)
  lines = []
  for model, group in comparisons.groupby('model', sort=False):
    evaluate.plot_panels_vs_random(os.path.join(workdir, f'headline_{model}.png'),
                                   summary[summary['model'] == model], model)
    rows = []
    for panel, by_panel in group.groupby('panel', sort=False):
      row = {'panel': panel}
      for short, by_metric in by_panel.groupby('short', sort=False):
        verdicts = by_metric.set_index('versus')['verdict']
        row[short] = f"{by_metric['value'].iloc[0]:.4f}"
        row[f'{short} vs L1000'] = verdicts.get('L1000', '—')
        row[f'{short} vs random'] = verdicts['random panels']
      rows.append(row)
    headlines = []
    for panel in group['panel'].unique():
      if panel in ('l1000', 'variance') or panel.startswith('deeplift_seed_'):
        continue
      pcc = group[(group['panel'] == panel) & (group['short'] == 'PCC')]
      title = "the DeepLIFT panel's" if panel == 'deeplift' else f'the {panel} panel\'s'
      headlines += [f"**{model}: {title} mean target PCC ({pcc['value'].iloc[0]:.4f}) is "
                    f"{'; '.join(pcc['verdict'])}.**", '']
    lines += [f"### {model} ({group['n_random_panels'].iloc[0]} random panels)", '', *headlines,
              _table(pd.DataFrame(rows)), '',
              _link(workdir, f'headline_{model}.png', f'{model}: panels against random panels',
                    image=True), '']
  return lines


def _paper_differences(config, data_summary, panels):
  """What keeps this run's figures from being the paper's, in a paragraph."""
  n_profiles = sum(split['samples'] for split in data_summary.values())
  n_train = data_summary['train']['samples']
  studies = len(data_summary['train']['studies'])
  lines = [
      f"Our compendium has {n_profiles} profiles from {studies} studies ({n_train} for "
      f"training); the paper's had {PAPER_PROFILES:,} GEO profiles after duplicate removal "
      f"(its AutoEncoder was tested on 11,100 of them). An AutoEncoder trained on {n_train} "
      "profiles learns far "
      "less than one trained on ~100k, so the reconstruction figures and the DeepLIFT ranking "
      f"are not comparable with the paper's (its AE: mean MAE {PAPER_AE['mean_mae']}, PCC "
      f"{PAPER_AE['mean_pcc']}). The inference models, too, learn from {n_train} profiles, so "
      "absolute target PCC and MAE are below the paper's Fig. 3; what carries over is the "
      f"comparison of panels of one size ({panels['panel_size']} genes inside D-GEX's gene "
      'universe) on the same data.']
  if config.preprocess.study_correction != 'none':
    lines.append(f"Each study is corrected (`{config.preprocess.study_correction}`) before "
                 'training, which the paper did not do.')
  if config.deeplift.reference != 'train_mean':
    lines.append(f"DeepLIFT's reference is `{config.deeplift.reference}` (the paper's: the "
                 'training mean profile).')
  return ' '.join(lines)


def _paired_tests_and_go(config, workdir, comparisons, panel, go_tables):
  """Report lines: `panel` against L1000 in paired tests per model, links to every pair,
  the per-gene metrics and Fig. 3, then the GO enrichment of each panel in `go_tables`."""
  return [
      *[_verdict(row) for _, row in comparisons[(comparisons['set_a'] == panel) &
                                                (comparisons['set_b'] == 'l1000')].iterrows()], '',
      f"All pairs: {_link(workdir, 'panel_comparisons.tsv', 'panel_comparisons.tsv')}; "
      f"per-gene metrics: {_link(workdir, 'panel_gene_metrics.tsv', 'panel_gene_metrics.tsv')}.",
      '',
      *[_link(workdir, f'fig3_{kind}.png', f'Fig. 3, {kind}', image=True)
        for kind in config.evaluate.models], '',
      '### GO molecular-function enrichment', '',
      *[f"- {name}: {int((t['p_adjusted'] < config.evaluate.go_fdr).sum())} of {len(t)} tested "
        f"terms significant (BH < {config.evaluate.go_fdr}); top: "
        f"{', '.join(t['name'].head(3))}" for name, t in go_tables.items()], '']


def top_genes(ranking: pd.DataFrame, n: int, l1000_table_path: str) -> pd.DataFrame:
  """The n best-ranked genes of `ranking` with rank, symbol, Entrez ID, their score (`score`,
  the DeepLIFT score, in a seed's ranking; `mean_rank` over the seeds in a consensus) and
  whether L1000 measures them too (`in_L1000`, by symbol or Entrez ID)."""
  panel = ranking_lib.assay_panel(ranking, n, l1000_table_path)
  score = 'score' if 'score' in ranking else 'mean_rank'
  table = panel[['rank', 'symbol', 'entrez']].assign(
      **{score: ranking.sort_values('rank')[score].head(n).to_numpy()})
  return table.assign(in_L1000=panel['in_l1000'].to_numpy())


def write_report(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                 quality: Mapping[str, Any], ranking: pd.DataFrame, panels: Mapping[str, Any],
                 go_tables: Mapping[str, pd.DataFrame], clustering: pd.DataFrame) -> None:
  """Writes `<workdir>/report.md`: the verdict on the panels first (with their headline
  figures), what differs from the paper, then the details; links only files that exist."""
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
  split_sizes = ', '.join(f"{name} {split['samples']} profiles"
                          for name, split in data_summary.items())
  seed = quality['seeds'][0]
  lines = [
      f"# landmark run report: {evaluate.run_name(os.path.join(workdir, 'report.md'))}", '',
      '## Verdict: is each panel better than L1000, and than random genes?', '',
      f"Each panel of {panels['panel_size']} genes infers {panels['n_targets']} target genes "
      f"on {data_summary['test']['samples']} held-out profiles. A gap is judged by the spread "
      'of the same gap among random panels of the same size: z = gap ÷ its sd among random '
      'panels (random minus random panel for L1000; random panel minus their mean for random '
      f'panels), positive = better; |z| ≥ {panels_lib.SIGNIFICANT_Z:g} counts as significant. '
      'Mean target PCC: higher is better; mean per-study-centred target MAE (log2 expression): '
      'lower is better. In the tables PCC is the former, MAE the latter.', '',
      *_verdict_tables(workdir, summary),
      '## What differs from the paper', '',
      _paper_differences(config, data_summary, panels), '',
      '## Details', '',
      f"Data: {split_sizes}; "
      f"{data_summary['train']['features']} probes; "
      f"studies {data_summary['train']['studies']}.", '',
      '### AutoEncoder reconstruction (held-out test split, original units)', '',
      _table(_reconstruction_rows(quality, n_seeds)), '',
      'PCA is fitted on the training split and reconstructs each held-out profile from its '
      'projection: the linear AE of that width, which the AE should at least match.', '',
      f"Against the baselines on the same profiles: {quality['baselines']['verdict']}.", '',
      _link(workdir, f'seed_{seed}/ae_density.png', f'per-gene MAE and PCC, seed {seed}',
            image=True), '',
      '### DeepLIFT landmarks', '',
      f"{_link(workdir, 'landmarks.tsv', 'landmarks.tsv')} ranks all {len(ranking)} genes by "
      f"their mean DeepLIFT rank over the {n_seeds} seeds (each seed's own ranking, with scores, "
      f"is `seed_<s>/landmarks.tsv`). {_seed_stability(ranking, k)} The top {k} share "
      f"{overlap['count']} genes with L1000's 978 landmarks (expected by chance "
      f"{overlap['expected']:.1f}, hypergeometric p = {overlap['p_value']:.3g}; the paper's "
      f"list shared 129). The top {k} as an assay panel: "
      f"{_link(workdir, 'panel_deeplift.tsv', 'panel_deeplift.tsv')}.", '',
      f'Top {TOP_GENES} genes:', '',
      _table(top_genes(ranking, min(TOP_GENES, len(ranking)), config.data.l1000_landmarks)), '',
      '### Inferring target genes from a panel', '',
      f"Panels of {panels['panel_size']} genes inside D-GEX's gene universe "
      f"({panels['n_genes']} genes present): DeepLIFT's consensus top genes (and each seed's), "
      "L1000's landmarks, the most "
      f"variable genes, and {config.evaluate.random_sets} random panels (the noise floor). "
      f"Models trained on the training split, scored on the {data_summary['test']['samples']} "
      f"held-out profiles over {panels['n_targets']} common target genes. `*_z_random`: "
      'distance from the random panels in their standard deviations. All panels: '
      f"{_link(workdir, 'panel_summary.tsv', 'panel_summary.tsv')}.", '',
      _table(summary[~summary['panel'].str.startswith('random_')]), '',
      seed_line, '',
      'Random panels: ' + ', '.join(
          f"{kind} mean PCC {g['pcc_mean'].mean():.4f} ± {g['pcc_mean'].std():.4f}, "
          f"mean MAE {g['mae_mean'].mean():.4f} ± {g['mae_mean'].std():.4f} ({len(g)} panels)"
          for kind, g in summary[summary['panel'].str.startswith('random_')].groupby('model')), '',
      "How much of each panel's genes' variance is explained by study (median η² on the "
      'training split, measured before any study correction), and its mean expression:', '',
      _table(panels['study_effects'][~panels['study_effects']['panel'].str.startswith('random_')]),
      '',
      '### DeepLIFT vs L1000, paired tests over target genes', '',
      *_paired_tests_and_go(config, workdir, comparisons, 'deeplift', go_tables),
      *[_link(workdir, f'go_{name}.png', f'GO enrichment of the {name} panel', image=True)
        for name in go_tables], '',
      '### Clustering labelled samples', '',
      'Hierarchical clustering (average linkage, correlation distance) of each labelled study, '
      'scored against its labels:', '',
      _table(clustering) if len(clustering) else 'No study has labels of two or more classes.',
      '',
      *[_link(workdir, name, 'clustering', image=True) for name in sorted(os.listdir(workdir))
        if name.startswith('clustering_') and name.endswith('.png')], '',
  ]
  fileio.write_text(os.path.join(workdir, 'report.md'), '\n'.join(lines))


def write_panel_report(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                       panel: pd.DataFrame, panels: Mapping[str, Any],
                       go_tables: Mapping[str, pd.DataFrame]) -> None:
  """Writes `<workdir>/report.md` for a designed panel (config.method a selector): the
  verdict on it against L1000 and random panels first, then the panel and the details."""
  with open(os.path.join(workdir, 'data_summary.json')) as f:
    data_summary = json.load(f)
  with open(os.path.join(workdir, 'l1000_overlap.json')) as f:
    overlap = json.load(f)
  method, summary = config.method, panels['summary']
  size = panels['panel_size']
  universe = ("D-GEX's gene universe" if config.panel.universe == 'dgex'
              else 'every annotated gene of the data')
  head = panel.head(TOP_GENES)[[c for c in ('rank', 'symbol', 'entrez', 'gain', 'in_l1000')
                                if c in panel]]
  comparisons = panels['comparisons']
  lines = [
      f"# landmark panel report: {evaluate.run_name(os.path.join(workdir, 'report.md'))}", '',
      f'## Verdict: does the {method} panel infer the transcriptome better than L1000, and '
      'than random genes?', '',
      f"`{method}` chose {len(panel)} genes from {panels['n_genes']} ({universe}) on "
      f"{data_summary['train']['samples']} training profiles "
      f"({_link(workdir, 'panel.tsv', 'panel.tsv')}). Panels are compared at {size} genes, "
      f"the L1000 landmarks present among those genes; each infers {panels['n_targets']} "
      f"target genes on {data_summary['test']['samples']} held-out profiles. A gap is judged "
      'by the spread of the same gap among random panels of the same size: z = gap ÷ its sd '
      'among random panels, positive = better (for PCC higher, for MAE lower); '
      f'|z| ≥ {panels_lib.SIGNIFICANT_Z:g} counts as significant.', '',
      *_verdict_tables(workdir, summary),
      '## The panel', '',
      f"The first {len(head)} of {len(panel)} genes (`gain`: the fraction of the training "
      "data's sum of squares the gene's step explained, in the units chosen in):", '',
      _table(head), '',
      f"The {len(panel)} genes share {overlap['count']} with L1000's landmarks (expected by "
      f"chance {overlap['expected']:.1f}, hypergeometric p = {overlap['p_value']:.3g}). GMT: "
      f"{_link(workdir, 'panel.gmt', 'panel.gmt')}; every panel compared: "
      f"{_link(workdir, 'panels.gmt', 'panels.gmt')}. Saved inference models "
      '(`--mode=infer`): `models/`.', '',
      '## Details', '',
      _table(summary[~summary['panel'].str.startswith('random_')]), '',
      *_paired_tests_and_go(config, workdir, comparisons, method, go_tables),
  ]
  fileio.write_text(os.path.join(workdir, 'report.md'), '\n'.join(lines))
