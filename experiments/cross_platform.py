"""Cross-platform test in miniature: RNA-seq landmarks, microarray targets (issue #17, §2).

The paper applied models trained on GEO microarrays to GTEx RNA-seq mapped onto the
microarray compendium's quantiles. Here the 36 lymphoblastoid lines of
../shared/data/rnaseq/, measured both by RNA-seq and by array, take GTEx's place, so what
is inferred from their RNA-seq landmarks can be scored against their own array values.

The genes are those of D-GEX's universe that the compendium, the RNA-seq file and the array
file all measure (found by Entrez ID, `saved_models.landmark_columns`). Each line's RNA-seq
log2(count + 1) and array profile over them is mapped by rank onto the quantiles of the
compendium's training profiles over the same genes (`preprocess.QuantileNormalizer`, as
preprocessing maps every array profile; method.md §1).

(a) The mapping: per gene, Pearson r across the lines between mapped RNA-seq and array
values (`r_mapped`), beside r before the mapping (`r_log2`) and with the RNA-seq lines
shuffled (`r_shuffled`, the null).

(b) Panels (`panels.reference_panels`, all of L1000's size among these genes): the demo
run's DeepLIFT ranking (config.cross_platform.landmarks), L1000, top variance and
`evaluate.random_sets` random panels. For each, ridge regression (`regression.fit_ridge`,
penalty on the validation split) is fitted on the compendium's training split
(configs/quick.py, the demo's), applied to the lines' mapped RNA-seq landmarks, and scored
per target gene against their mapped array values: PCC across the lines and MAE after
centring each gene on the lines' mean (`mae_centred`: the model learnt study-centred
profiles, so a new batch's offset is not the landmarks' to predict). The same fits applied
to the array's own landmarks are the same-platform control. Each named panel is set
against the random panels and against L1000 (`panels.calibrated_comparisons`) on the
common targets; z > 0 means better.

Writes into --workdir: mapping.tsv (per gene), mapping.png, cross_platform_panels.tsv (per
input and panel, `panels.summarize`'s columns; its plain `mae_*` keep each gene's offset
between platforms and between these lines and the compendium), cross_platform.tsv (each named
panel against random panels and L1000), cross_platform.png and summary.md. A few minutes on a
2-core CPU.

  python -m experiments.cross_platform --workdir=experiments/results/cross_platform
  python -m experiments.cross_platform --config=configs/cross_platform.py:random_sets=5 \
      --workdir=/tmp/cross_platform
"""

import dataclasses
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np
import pandas as pd

from landmark import fileio
from landmark import metrics
from landmark.data import preprocess
from landmark.data import readers
from landmark.errors import DataError
from landmark.evaluation import evaluate
from landmark.evaluation import panels as panels_lib
from landmark.inference import regression
from landmark.inference import saved_models

config_flags.DEFINE_config_file('config', 'configs/cross_platform.py', 'Experiment config.',
                                lock_config=True, allow_override=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the tables and figures.',
                               allow_override=True)
flags.mark_flag_as_required('workdir')

INPUTS = {'rnaseq': 'RNA-seq landmarks', 'array': 'array landmarks (same platform)'}
NAMED = ('deeplift', 'l1000', 'variance')
METRICS = (('pcc_mean', 'mean target PCC across lines (Pearson r)', 'higher'),
           ('mae_centred_mean', 'mean target MAE, lines centred (log2 expression)', 'lower'))
SHORT = {column: short for column, _, short, _ in panels_lib.VERDICT_METRICS}


def read_lines(path: str) -> readers.Compendium:
  """One file of rnaseq/ (genes x lines, Entrez IDs in `entrez`), each Entrez ID once.

  Both files repeat 10 IDs; the first row is kept, since `landmark_columns` (rightly)
  refuses a gene given twice.
  """
  with readers.reading(path, 'rnaseq/ table'):
    table = pd.read_csv(path, sep='\t', index_col='entrez', dtype={'entrez': str})
  table = table[~table.index.duplicated()]
  return readers.Compendium(table.to_numpy(np.float32).T, table.index, table.columns,
                            pd.DataFrame(index=table.columns), source=path)


@dataclasses.dataclass
class Lines:
  """The lines' profiles over the genes measured by RNA-seq, by array and in the compendium."""

  genes: np.ndarray           # symbols, in the compendium's gene order
  rnaseq: np.ndarray          # (lines, genes) log2(count + 1)
  array: np.ndarray           # (lines, genes) RMA, log2
  rnaseq_mapped: np.ndarray   # each line mapped by rank onto the compendium's quantiles
  array_mapped: np.ndarray
  reference: np.ndarray       # those quantiles: the training profiles' mean sorted values


def lines_on_compendium(cross, data: panels_lib.GeneSplits, annotation: pd.DataFrame,
                        probes, data_config) -> Lines:
  """Reads `cross.rnaseq` and `cross.array`, keeps the genes of `data` both measure and maps
  each line onto the quantiles of `data.train` over those genes.

  `probes`: the compendium's probe IDs, through which a gene symbol gets its Entrez IDs.
  """
  rnaseq, array = read_lines(cross.rnaseq), read_lines(cross.array)
  if list(rnaseq.samples) != list(array.samples):
    raise DataError(cross.array, f'its lines are not those of {cross.rnaseq} in the same order')
  ids = saved_models.gene_ids(data.genes, annotation, probes, data_config)
  rnaseq_values, rnaseq_ids = saved_models.landmark_columns(rnaseq, ids)
  array_values, array_ids = saved_models.landmark_columns(array, ids)
  both = ~np.isnan(rnaseq_values[0]) & ~np.isnan(array_values[0])
  logging.info('Genes found as %s / %s IDs: %d by RNA-seq, %d by array, %d by both, of the '
               'compendium\'s %d', rnaseq_ids, array_ids, (~np.isnan(rnaseq_values[0])).sum(),
               (~np.isnan(array_values[0])).sum(), both.sum(), len(data.genes))
  normalizer = preprocess.QuantileNormalizer().fit(data.train[:, both])
  log2 = np.log2(rnaseq_values[:, both] + 1.0).astype(np.float32)
  array_values = array_values[:, both].astype(np.float32)
  return Lines(data.genes[both], log2, array_values, normalizer.transform(log2),
               normalizer.transform(array_values), normalizer.reference)


def mapping_table(lines: Lines, seed: int) -> pd.DataFrame:
  """Per gene, Pearson r across the lines between RNA-seq and array: mapped RNA-seq
  (`r_mapped`), log2(count + 1) before the mapping (`r_log2`), and mapped RNA-seq with the
  lines shuffled (`r_shuffled`, what no shared biology gives)."""
  shuffled = lines.rnaseq_mapped[np.random.default_rng(seed).permutation(len(lines.rnaseq))]
  return pd.DataFrame({
      'r_mapped': metrics.per_gene_pcc(lines.array, lines.rnaseq_mapped),
      'r_log2': metrics.per_gene_pcc(lines.array, lines.rnaseq),
      'r_shuffled': metrics.per_gene_pcc(lines.array, shuffled),
      'array_mean': lines.array.mean(axis=0),
  }, index=pd.Index(lines.genes, name='gene'))


def mapping_summary(table: pd.DataFrame) -> pd.DataFrame:
  """Median r and the fraction of genes with r > 0.5, per column of `mapping_table`."""
  columns = ['r_mapped', 'r_log2', 'r_shuffled']
  return pd.DataFrame({'genes': len(table), 'median': table[columns].median(),
                       'fraction_above_0.5': (table[columns] > 0.5).mean()})


def score_panels(config, data: panels_lib.GeneSplits, lines: Lines,
                 panels: dict[str, list[str]], targets: list[str]) -> dict:
  """{(input, panel): `metrics.gene_metrics`} of ridge fits on the compendium inferring
  `targets` (a random panel: those outside it) of the lines from each input of INPUTS."""
  results = {}
  batch = np.zeros(len(lines.array))   # the lines are one batch: mae_centred centres on it
  for i, (name, panel) in enumerate(panels.items()):
    logging.info('Panel %s (%d of %d): ridge on %d landmarks', name, i + 1, len(panels),
                 len(panel))
    own = [t for t in targets if t not in set(panel)]
    x, y = data.columns(panel), data.columns(own)
    model = regression.fit_ridge(data.train[:, x], data.train[:, y], data.val[:, x],
                                 data.val[:, y], config.evaluate.ridge_grid)
    for source, values in (('rnaseq', lines.rnaseq_mapped), ('array', lines.array_mapped)):
      results[source, name] = metrics.gene_metrics(
          lines.array_mapped[:, y], model.predict(values[:, x]), own, batch,
          config.evaluate.block_size)
  return results


def comparison_table(summary: pd.DataFrame) -> pd.DataFrame:
  """One row per input and named panel: each metric of METRICS, the random panels' mean and
  sd, and z against random panels and against L1000 (`panels.calibrated_comparisons`;
  positive = better)."""
  calibrated = panels_lib.calibrated_comparisons(summary)
  rows = []
  for (source, panel), group in calibrated.groupby(['model', 'panel'], sort=False):
    row = {'input': source, 'panel': panel}
    for column, _, _ in METRICS:
      metric = group[group['short'] == SHORT[column]].set_index('versus')
      random = metric.loc['random panels']
      name = column.removesuffix('_mean')
      row.update({name: random['value'], f'{name}_random_mean': random['reference'],
                  f'{name}_random_sd': random['null_sd'], f'{name}_z_random': random['z'],
                  f'{name}_z_l1000': metric['z'].get('L1000', np.nan)})
    rows.append(row)
  return pd.DataFrame(rows)


def plot(path: str, summary: pd.DataFrame, k: int, targets: int, lines: int,
         constant_mae: float) -> None:
  """Each named panel's mean target PCC and centred MAE over the histogram of the random
  panels' values, one row per input; on the MAE axes, that of predicting the lines' mean."""
  figure, axes = evaluate.new_figure(len(INPUTS), len(METRICS), (12, 4.2 * len(INPUTS)))
  for row, (source, label) in enumerate(INPUTS.items()):
    rows = summary[summary['model'] == source]
    random = rows[rows['panel'].str.startswith('random_')]
    for ax, (column, axis_label, better) in zip(axes[row], METRICS):
      ax.hist(random[column], bins=10, color='0.8', edgecolor='0.5',
              label=f'{len(random)} random panels')
      for i, panel in enumerate(NAMED):
        value = rows.loc[rows['panel'] == panel, column].iloc[0]
        ax.axvline(value, color=f'C{i}', linestyle=('-', '--', ':')[i], linewidth=2,
                   label=f'{panel} ({value:.4f})')
      if column == 'mae_centred_mean':
        ax.axvline(constant_mae, color='0.3', linestyle='-.', linewidth=1.5,
                   label=f"every line at the lines' mean ({constant_mae:.4f})")
      ax.set_xlabel(f'{axis_label}; {better} is better')
      ax.set_ylabel('random panels (count)')
      ax.set_title(f'inferred from {label}', fontsize='medium')
      ax.margins(x=0.1)
      ax.legend(fontsize='small')
  figure.suptitle(f'Cross-platform test: ridge on {k} landmarks, fitted on the HG-U133A '
                  f'compendium, infers {targets} target genes of {lines} lymphoblastoid lines; '
                  'scored against their array values')
  fileio.save_figure(path, figure)


def plot_mapping(path: str, table: pd.DataFrame, lines: int) -> None:
  """Histograms of the per-gene r between RNA-seq and array across the lines."""
  figure, axes = evaluate.new_figure(1, 1, (8, 4.5))
  ax, bins = axes[0, 0], np.linspace(-1, 1, 81)
  for i, (column, label) in enumerate((
      ('r_mapped', 'RNA-seq mapped onto the compendium quantiles'),
      ('r_log2', 'RNA-seq log2(count + 1), before mapping'),
      ('r_shuffled', 'mapped, lines shuffled (null)'))):
    ax.hist(table[column], bins=bins, histtype='step', linewidth=1.5, color=f'C{i}',
            label=f'{label}: median {table[column].median():.3f}')
  ax.axvline(0.5, color='black', linestyle='--', linewidth=1, label='r = 0.5')
  ax.set_xlabel('per-gene Pearson r across the lines, RNA-seq vs array')
  ax.set_ylabel('genes (count)')
  ax.legend(fontsize='small', loc='upper center', bbox_to_anchor=(0.5, -0.15), ncol=2)
  figure.suptitle(f'Cross-platform test, RNA-seq to array mapping: {len(table)} genes, '
                  f'{lines} lymphoblastoid lines')
  fileio.save_figure(path, figure)


def _markdown(frame: pd.DataFrame) -> str:
  lines = ['| ' + ' | '.join(frame.columns) + ' |', '|' + '---|' * len(frame.columns)]
  lines += ['| ' + ' | '.join(map(str, row)) + ' |' for row in frame.itertuples(index=False)]
  return '\n'.join(lines)


def headline(table: pd.DataFrame) -> pd.DataFrame:
  """The table of summary.md and the README: per input, each named panel's mean PCC and
  centred MAE with z against random panels (and against L1000), and the random band."""
  rows = []
  for source, group in table.groupby('input', sort=False):
    for record in group.itertuples(index=False):
      cells = {'input': INPUTS[source], 'panel': record.panel}
      for name in ('pcc', 'mae_centred'):
        z_l1000 = getattr(record, f'{name}_z_l1000')
        versus = '' if np.isnan(z_l1000) else f'; {z_l1000:+.1f} vs L1000'
        cells[name] = (f'{getattr(record, name):.4f} '
                       f'({getattr(record, f"{name}_z_random"):+.1f}{versus})')
      rows.append(cells)
    first = group.iloc[0]
    rows.append({'input': INPUTS[source], 'panel': 'random panels (mean ± sd)', **{
        name: f'{first[f"{name}_random_mean"]:.4f} ± {first[f"{name}_random_sd"]:.4f}'
        for name in ('pcc', 'mae_centred')}})
  return pd.DataFrame(rows).rename(columns={'pcc': 'mean PCC (z)',
                                            'mae_centred': 'mean MAE, centred (z)'})


def write_summary(path: str, mapping: pd.DataFrame, table: pd.DataFrame, facts: dict) -> None:
  """summary.md: what was compared, the mapping check and the panel table."""
  mapping = mapping.reset_index(names='r').round(3)
  text = f"""# Cross-platform test: RNA-seq landmarks, array targets

{facts['lines']} lymphoblastoid lines measured by RNA-seq and by array; {facts['genes']} genes
measured by both and by the compendium. Ridge regression fitted on the compendium's
{facts['train']} training profiles (penalty on {facts['val']} validation profiles) infers
{facts['targets']} common target genes from {facts['k']} landmarks; DeepLIFT: {facts['landmarks']}
({facts['deeplift_in_demo']} of its genes in the demo's own {facts['demo_k']}-gene panel).

## (a) RNA-seq mapped onto the compendium's quantiles vs the same lines' array values

Per-gene Pearson r across the lines (`mapping.tsv`, `mapping.png`):

{_markdown(mapping)}

## (b) Panels: mean target PCC and MAE (lines centred), z against {facts['random']} random panels

z in random-panel SDs, positive = better; "vs L1000": the gap to L1000 set beside the same
gap between random panels (`cross_platform.tsv`, `cross_platform.png`). Predicting every
line at the lines' mean gives a centred MAE of {facts['constant_mae']:.4f}.

{_markdown(headline(table))}
"""
  fileio.write_text(path, text)


@dataclasses.dataclass
class Result:
  """What `run` computed: the compendium's gene splits over the lines' genes, the lines, the
  panels and targets, and the tables it wrote."""

  data: panels_lib.GeneSplits
  lines: Lines
  panels: dict[str, list[str]]
  targets: list[str]
  mapping: pd.DataFrame       # mapping_table
  summary: pd.DataFrame       # panels.summarize, per input ('model') and panel
  table: pd.DataFrame         # comparison_table


def run(config, workdir: str) -> Result:
  """The whole experiment: reads and prepares the data, writes every table and figure."""
  splits = preprocess.prepare(readers.load_compendium(config.data), config, config.seed)
  annotation = readers.read_probe_annotation(config.data.annotation)
  data = panels_lib.gene_splits(splits, annotation, panels_lib.dgex_universe(config.data))
  lines = lines_on_compendium(config.cross_platform, data, annotation, splits.train.features,
                              config.data)
  mapping = mapping_table(lines, config.seed)
  mapping_stats = mapping_summary(mapping)
  logging.info('RNA-seq vs array, per-gene r across lines:\n%s', mapping_stats)

  compendium_genes, columns = data.genes, data.columns(lines.genes)
  data = dataclasses.replace(data, genes=lines.genes, train=data.train[:, columns],
                             val=data.val[:, columns], test=data.test[:, columns])
  landmarks = pd.read_csv(config.cross_platform.landmarks, sep='\t').sort_values('rank')
  l1000 = panels_lib.read_symbols(config.data.dgex_landmarks)
  panels = panels_lib.reference_panels(data, landmarks['symbol'].tolist(), l1000,
                                       config.deeplift.top_k, config.evaluate.random_sets,
                                       config.seed)
  targets = panels_lib.common_targets(data, panels)
  results = score_panels(config, data, lines, panels, targets)
  summary = panels_lib.summarize(results, config.evaluate.permutation_alpha)
  table = comparison_table(summary)

  k = len(panels['l1000'])
  truth = lines.array_mapped[:, data.columns(targets)]
  demo_k = len(set(l1000) & set(compendium_genes))   # the demo's panel size
  demo_panel = landmarks['symbol'][landmarks['symbol'].isin(compendium_genes)].head(demo_k)
  facts = {'lines': len(lines.array), 'genes': len(lines.genes), 'train': len(data.train),
           'val': len(data.val), 'targets': len(targets), 'k': k,
           'random': config.evaluate.random_sets,
           'landmarks': os.path.relpath(config.cross_platform.landmarks),
           'deeplift_in_demo': len(set(panels['deeplift']) & set(demo_panel)), 'demo_k': demo_k,
           'constant_mae': float(np.abs(truth - truth.mean(axis=0)).mean())}
  fileio.write_table(os.path.join(workdir, 'mapping.tsv'), mapping.round(5))
  plot_mapping(os.path.join(workdir, 'mapping.png'), mapping, len(lines.array))
  fileio.write_table(os.path.join(workdir, 'cross_platform_panels.tsv'),
                     summary.rename(columns={'model': 'input'}), index=False)
  fileio.write_table(os.path.join(workdir, 'cross_platform.tsv'), table, index=False)
  plot(os.path.join(workdir, 'cross_platform.png'), summary, k, len(targets), len(lines.array),
       facts['constant_mae'])
  write_summary(os.path.join(workdir, 'summary.md'), mapping_stats, table, facts)
  return Result(data, lines, panels, targets, mapping, summary, table)


def main(argv):
  del argv
  result = run(flags.FLAGS.config, _WORKDIR.value)
  with pd.option_context('display.width', 200, 'display.max_columns', 20):
    print(headline(result.table).to_string(index=False))


if __name__ == '__main__':
  app.run(main)
