"""The paper's evaluation (method.md §5) on numpy arrays: paired comparison of two landmark
sets, GO enrichment and sample-level clustering, over the per-gene errors and permutation
test of landmark.metrics.

Arrays of expression are (samples, genes): metrics are computed per gene (column) over
samples. Nothing here trains a model; the inputs are predictions or per-gene metrics.
"""

import os
import textwrap
from typing import Any, Callable, Iterable, Mapping, Sequence

from matplotlib import figure as mpl_figure
from matplotlib import ticker
import numpy as np
from numpy.typing import ArrayLike
import pandas as pd
from scipy import stats
from scipy.cluster import hierarchy
from sklearn import decomposition
from sklearn import metrics as sk_metrics

from landmark import fileio
from landmark import metrics


def paired_comparison(metric_a: ArrayLike, metric_b: ArrayLike,
                      lower_is_better: bool) -> dict[str, Any]:
  """Paired comparison of one per-gene metric between landmark sets A and B (same genes).

  Returns means, mean difference (A - B), the paired t-test (scipy.stats.ttest_rel) and
  Wilcoxon signed-rank test (scipy.stats.wilcoxon, zero differences dropped), and the
  number of genes where A is better, B is better, or they tie. Identical vectors give a
  NaN t statistic and p (scipy's answer).
  """
  metric_a = np.asarray(metric_a, dtype=np.float64)
  metric_b = np.asarray(metric_b, dtype=np.float64)
  if metric_a.ndim != 1 or metric_a.shape != metric_b.shape:
    raise ValueError(f'metric vectors must be 1-D of one length, got {metric_a.shape} '
                     f'and {metric_b.shape}')
  difference = metric_a - metric_b
  a_better = difference < 0 if lower_is_better else difference > 0
  b_better = difference > 0 if lower_is_better else difference < 0
  t_test = stats.ttest_rel(metric_a, metric_b)
  wilcoxon = stats.wilcoxon(metric_a, metric_b)
  return {
      'n_genes': metric_a.size,
      'mean_a': metric_a.mean(),
      'mean_b': metric_b.mean(),
      'mean_difference': difference.mean(),
      't_statistic': float(t_test.statistic),
      't_p_value': float(t_test.pvalue),
      'wilcoxon_statistic': float(wilcoxon.statistic),
      'wilcoxon_p_value': float(wilcoxon.pvalue),
      'a_wins': int(a_better.sum()),
      'b_wins': int(b_better.sum()),
      'ties': int((difference == 0).sum()),
  }


def _common_targets(metrics_a, metrics_b):
  common = metrics_a.index.intersection(metrics_b.index, sort=False)
  if common.empty:
    raise ValueError('the two landmark sets share no target genes')
  return metrics_a.loc[common], metrics_b.loc[common]


def compare_landmark_sets(metrics_a: pd.DataFrame, metrics_b: pd.DataFrame,
                          names: Sequence[str] = ('A', 'B'),
                          alpha: float = 0.01) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Compares two landmark sets on their common targets (the genes in neither set).

  metrics_a / metrics_b: `metrics.gene_metrics` tables, each over the targets of its own set;
  they are restricted to the targets both share. Returns (summary, failing):
  summary has one row per metric (mae, pcc) with both sets' mean/min/max, both paired tests,
  win counts and how many targets fail the permutation test (p >= alpha) with each set;
  failing lists those targets (set, target, pcc, p_value).
  """
  metrics_a, metrics_b = _common_targets(metrics_a, metrics_b)
  failing_a = metrics_a[~metrics.permutation_pass(metrics_a['p_value'], alpha)]
  failing_b = metrics_b[~metrics.permutation_pass(metrics_b['p_value'], alpha)]
  rows = []
  for metric, lower_is_better in (('mae', True), ('pcc', False)):
    row = {'metric': metric, 'set_a': names[0], 'set_b': names[1]}
    row.update(paired_comparison(metrics_a[metric], metrics_b[metric], lower_is_better))
    row.update({'min_a': metrics_a[metric].min(), 'max_a': metrics_a[metric].max(),
                'min_b': metrics_b[metric].min(), 'max_b': metrics_b[metric].max(),
                'permutation_fail_a': len(failing_a), 'permutation_fail_b': len(failing_b)})
    rows.append(row)
  failing = pd.concat([failing_a.assign(set=names[0]), failing_b.assign(set=names[1])])
  failing = failing.rename_axis('target').reset_index()[['set', 'target', 'pcc', 'p_value']]
  return pd.DataFrame(rows), failing.reset_index(drop=True)


def calibrated_gap(metric_a: ArrayLike, metric_b: ArrayLike, random_metrics: Sequence[ArrayLike],
                   statistic: Callable[[np.ndarray], float] = np.mean) -> dict[str, float]:
  """The gap statistic(A) - statistic(B) against the same gap between random gene sets.

  random_metrics: per-gene metric vectors of random landmark sets of the same size as A
  and B, evaluated by the caller the same way. See `gap_against_random`.
  """
  gap = statistic(np.asarray(metric_a)) - statistic(np.asarray(metric_b))
  return gap_against_random(gap, [statistic(np.asarray(m)) for m in random_metrics])


def gap_against_random(gap: float, random_stats: ArrayLike) -> dict[str, float]:
  """A gap between two panels' statistics against the gaps between random panels.

  random_stats: the statistic of each random panel of the same size, measured as the gap's
  two terms were. The null distribution is the gap over all ordered pairs (i, j), i != j, of
  random panels: the difference two uninformed panels show by chance. Returns gap, null mean
  and sd, z = (gap - null mean) / null sd, and the two-sided empirical p = (1 + #{|null gap|
  >= |gap|}) / (1 + #pairs); the pairs share panels, so p and z are only as good as the
  number of random panels behind them. z is inf or NaN where the random panels all agree.
  """
  random_stats = np.asarray(random_stats, dtype=np.float64)
  if len(random_stats) < 3:
    raise ValueError(f'need at least 3 random sets for a null, got {len(random_stats)}')
  null = (random_stats[:, None] - random_stats[None, :])[~np.eye(len(random_stats), dtype=bool)]
  null_sd = null.std(ddof=1)
  with np.errstate(divide='ignore', invalid='ignore'):   # random panels all alike: inf or NaN
    z = (gap - null.mean()) / null_sd
  return {
      'gap': float(gap),
      'null_mean': float(null.mean()),
      'null_sd': float(null_sd),
      'z': float(z),
      'p_value': float((1 + np.sum(np.abs(null) >= abs(gap))) / (1 + null.size)),
      'n_random_sets': len(random_stats),
  }


METRIC_LABELS = {   # axis labels, with units, of the per-gene metrics the figures show
    'MAE': 'per-gene MAE (log2 expression)',
    'PCC': 'per-gene PCC (Pearson r)',
    'mae': 'per-gene MAE (log2 expression)',
    'pcc': 'per-gene PCC (Pearson r)',
}
MARKERS = 'os^Dv<>Ph*Xd'


def run_name(path: str | os.PathLike) -> str:
  """The run a figure belongs to: the folder it is written to (`<run>/seed_<s>` for a seed's),
  so every title names its run without each caller passing it."""
  directory = os.path.dirname(os.path.abspath(path))
  name = os.path.basename(directory)
  if name.startswith('seed_'):
    name = f'{os.path.basename(os.path.dirname(directory))}/{name}'
  return name


def new_figure(rows: int, columns: int,
               size: tuple[float, float]) -> tuple[mpl_figure.Figure, np.ndarray]:
  """(figure, 2-D array of axes) drawn without pyplot: no backend to choose, no global state.

  `fileio.save_figure` renders it to PNG with matplotlib's Agg canvas.
  """
  figure = mpl_figure.Figure(figsize=size, layout='constrained')
  return figure, figure.subplots(rows, columns, squeeze=False)


def _draw_density(ax, values, xlabel):
  """Gaussian KDE of each named vector of one metric, each its own colour and line style; a
  degenerate vector (constant) is a vertical line."""
  styles = ('-', '--', ':', '-.')
  for i, (name, vector) in enumerate(values.items()):
    style = {'color': f'C{i}', 'linestyle': styles[i % len(styles)]}
    vector = np.asarray(vector, dtype=np.float64)
    vector = vector[np.isfinite(vector)]
    if vector.size < 2 or np.ptp(vector) == 0:
      ax.axvline(vector[0] if vector.size else 0.0, label=f'{name} (constant)', **style)
      continue
    grid = np.linspace(vector.min(), vector.max(), 512)
    ax.plot(grid, stats.gaussian_kde(vector)(grid), label=f'{name} (mean {vector.mean():.4f})',
            **style)
  ax.set_xlabel(xlabel)
  ax.set_ylabel('density (genes, normalised)')
  ax.legend(fontsize='small')


def plot_density(path: str | os.PathLike, values: Mapping[str, ArrayLike], what: str) -> None:
  """Fig. 2a-style densities of per-gene metrics, one axis per named metric of `values`
  (e.g. {'MAE': ..., 'PCC': ...}): metrics of different units never share an axis. `what`
  says what was measured; the title names the run (`run_name`)."""
  figure, axes = new_figure(1, len(values), (5 * len(values), 4))
  for ax, (metric, vector) in zip(axes[0], values.items()):
    _draw_density(ax, {metric: vector}, METRIC_LABELS.get(metric, metric))
  figure.suptitle(f'{run_name(path)}: {what}')
  fileio.save_figure(path, figure)


def plot_comparison(path: str | os.PathLike, metrics_a: pd.DataFrame, metrics_b: pd.DataFrame,
                    names: Sequence[str], model: str) -> None:
  """Fig. 3 of `model`: densities of per-gene MAE and PCC for panels A and B on their common
  targets, and per-gene scatters of A against B with the diagonal."""
  metrics_a, metrics_b = _common_targets(metrics_a, metrics_b)
  figure, axes = new_figure(2, 2, (10, 9))
  for column, (metric, better) in enumerate((('mae', 'lower'), ('pcc', 'higher'))):
    label = METRIC_LABELS[metric]
    a, b = metrics_a[metric].to_numpy(), metrics_b[metric].to_numpy()
    _draw_density(axes[0, column], {names[0]: a, names[1]: b}, label)
    scatter = axes[1, column]
    scatter.scatter(b, a, s=4, alpha=0.4, color='C4')
    low, high = min(a.min(), b.min()), max(a.max(), b.max())
    scatter.plot([low, high], [low, high], color='black', linewidth=1,
                 label=f'{names[0]} = {names[1]}')
    scatter.set_xlabel(f'{label}, {names[1]}')
    scatter.set_ylabel(f'{label}, {names[0]}')
    wins = int(np.sum(a < b) if better == 'lower' else np.sum(a > b))
    scatter.legend(title=f'{names[0]} better ({better}) on {wins} of {len(a)}',
                   fontsize='small', title_fontsize='small', loc='upper left')
  figure.suptitle(f'{run_name(path)}: {model} inference from {names[0]} vs {names[1]}, '
                  f'{len(metrics_a)} common target genes (held-out profiles)')
  fileio.save_figure(path, figure)


def plot_panels_vs_random(path: str | os.PathLike, summary: pd.DataFrame, model: str) -> None:
  """The headline figure of `model`: each named panel's mean target PCC and mean per-study-
  centred MAE (one axis each) over the strip and histogram of the random panels' values.

  summary: `panels.summarize`'s rows of one model (random panels named `random_<i>`).
  """
  random = summary[summary['panel'].str.startswith('random_')]
  named = summary[~summary['panel'].str.startswith('random_')]
  figure, axes = new_figure(1, 2, (12, 5.5))
  for ax, (column, label, better) in zip(axes[0], (
      ('pcc_mean', 'mean target PCC (Pearson r)', 'higher'),
      ('mae_centred_mean', 'mean per-study-centred target MAE (log2 expression)', 'lower'))):
    values = random[column].to_numpy()
    if len(values):
      ax.hist(values, bins=max(3, min(12, len(values))), color='0.8', edgecolor='0.5',
              label=f'{len(values)} random panels')
      jitter = np.random.default_rng(0).uniform(0.05, 0.25, len(values))
      ax.scatter(values, jitter, color='0.3', marker='|', s=200, label='one random panel')
    for i, row in enumerate(named.itertuples(index=False)):
      ax.axvline(getattr(row, column), color=f'C{i % 10}', linestyle=('-', '--', ':', '-.')[i % 4],
                 linewidth=2, label=f'{row.panel} ({getattr(row, column):.4f})')
    ax.set_xlabel(f'{label}; {better} is better')
    ax.set_ylabel('random panels (count)')
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.margins(x=0.08)
    ax.legend(fontsize='small', loc='upper center', bbox_to_anchor=(0.5, -0.15), ncol=2)
  figure.suptitle(f'{run_name(path)}: {model} inference of {int(named["targets"].max())} '
                  'target genes, each panel against random panels of its size (held-out profiles)')
  fileio.save_figure(path, figure)


def read_gmt(path: str | os.PathLike) -> dict[str, tuple[str, set[str]]]:
  """GMT gene sets: {term ID: (term name, set of gene symbols)}."""
  gene_sets = {}
  with open(path) as f:
    for line_number, line in enumerate(f, 1):
      fields = line.rstrip('\n').split('\t')
      if len(fields) < 2:
        raise ValueError(f'{path}:{line_number}: a GMT line needs a term ID and a name')
      gene_sets[fields[0]] = (fields[1], set(filter(None, fields[2:])))
  return gene_sets


def go_enrichment(selected_genes: Iterable[str], universe_genes: Iterable[str],
                  gene_sets: Mapping[str, tuple[str, set[str]]], min_size: int = 10,
                  max_size: int = 500) -> pd.DataFrame:
  """Over-representation of `selected_genes` in each gene set (clusterProfiler's enricher).

  As clusterProfiler does: the universe N is the universe genes annotated to at least one
  set; the selection n and every set are restricted to it; sets whose restricted size K is
  outside [min_size, max_size], or that contain no selected gene, are not tested. The
  p-value is the hypergeometric upper tail P(X >= k) = hypergeom.sf(k - 1, N, K, n), and
  p_adjusted is Benjamini-Hochberg over the tested sets. Sorted by p_value.
  """
  annotated = set().union(*(genes for _, genes in gene_sets.values()))
  universe = set(universe_genes) & annotated
  selected = set(selected_genes) & universe
  rows = []
  for term, (name, genes) in gene_sets.items():
    members = genes & universe
    overlap = sorted(members & selected)
    if min_size <= len(members) <= max_size and overlap:
      rows.append((term, name, len(members), len(overlap), '/'.join(overlap)))
  table = pd.DataFrame(rows, columns=['term', 'name', 'set_size', 'overlap', 'genes'])
  table = table.astype({'set_size': np.int64, 'overlap': np.int64})
  n_universe, n_selected = len(universe), len(selected)
  table['expected'] = table['set_size'] * n_selected / n_universe
  table['p_value'] = stats.hypergeom.sf(table['overlap'] - 1, n_universe, table['set_size'],
                                        n_selected)
  table['p_adjusted'] = stats.false_discovery_control(table['p_value'])
  columns = ['term', 'name', 'set_size', 'overlap', 'expected', 'p_value', 'p_adjusted', 'genes']
  return table[columns].sort_values(['p_value', 'term'], kind='stable').reset_index(drop=True)


def plot_enrichment(path: str | os.PathLike, table: pd.DataFrame, panel: str, fdr: float = 0.05,
                    top: int = 20) -> None:
  """Bar chart of -log10 adjusted p for the `top` terms with p_adjusted < fdr of `panel`'s
  enrichment `table`; the title names the panel and the run."""
  significant = table[table['p_adjusted'] < fdr].nsmallest(top, 'p_adjusted')
  figure, axes = new_figure(1, 1, (9, 1.8 + 0.3 * len(significant)))
  ax = axes[0, 0]
  title = (f'{run_name(path)}: GO molecular-function enrichment of the {panel} panel, '
           f'{int((table["p_adjusted"] < fdr).sum())} of {len(table)} tested terms significant')
  if significant.empty:
    ax.text(0.5, 0.5, f'no significant terms (BH-adjusted p < {fdr})', ha='center', va='center')
    ax.set_axis_off()
  else:
    names = [textwrap.shorten(name, 60, placeholder='...') for name in significant['name']]
    ax.barh(names[::-1], -np.log10(significant['p_adjusted'][::-1]), color='C0')
    ax.axvline(-np.log10(fdr), color='black', linestyle='--', linewidth=1,
               label=f'BH-adjusted p = {fdr}')
    ax.set_xlabel('-log10 BH-adjusted p (higher = more enriched)')
    ax.legend(fontsize='small', loc='lower right')
  figure.suptitle(textwrap.fill(title, 90), fontsize='medium')
  fileio.save_figure(path, figure)


def cluster_scores(features: ArrayLike, labels: ArrayLike,
                   n_clusters: int | None = None) -> dict[str, float]:
  """Hierarchical clustering of samples (average linkage, correlation distance) cut into
  `n_clusters` (default: the number of label classes), scored against the labels by the
  adjusted Rand index and normalised mutual information. Rows are samples; a constant row
  has no correlation distance and is an error."""
  features = np.asarray(features, dtype=np.float64)
  labels = np.asarray(labels)
  if features.shape[0] != labels.shape[0]:
    raise ValueError(f'{features.shape[0]} samples but {labels.shape[0]} labels')
  if np.any(np.ptp(features, axis=1) == 0):
    raise ValueError('a constant sample has no correlation distance')
  n_clusters = n_clusters or len(np.unique(labels))
  tree = hierarchy.linkage(features, method='average', metric='correlation')
  clusters = hierarchy.fcluster(tree, t=n_clusters, criterion='maxclust')
  return {'ari': sk_metrics.adjusted_rand_score(labels, clusters),
          'nmi': sk_metrics.normalized_mutual_info_score(labels, clusters)}


def pca_features(x: ArrayLike, n_components: int) -> np.ndarray:
  """Samples projected on their first `n_components` principal components (sklearn PCA)."""
  return decomposition.PCA(n_components=n_components).fit_transform(np.asarray(x, np.float64))


def compare_representations(representations: Mapping[str, ArrayLike],
                            labels: ArrayLike) -> pd.DataFrame:
  """ARI/NMI of `cluster_scores` for each named (samples, dims) representation."""
  rows = [{'representation': name, 'dims': np.shape(features)[1],
           **cluster_scores(features, labels)} for name, features in representations.items()]
  return pd.DataFrame(rows)


def _same_scatter(a, b):
  """Whether two (samples, 2) PCA scatters are one picture: equal up to each axis's sign, to
  1% of their extent (sklearn's randomized PCA of a wide matrix is that approximate)."""
  scale = max(np.abs(a).max(), np.abs(b).max(), 1e-12)
  return a.shape == b.shape and np.allclose(np.abs(a), np.abs(b), atol=1e-2 * scale)


def plot_representations(path: str | os.PathLike, representations: Mapping[str, ArrayLike],
                         labels: ArrayLike, study: str) -> None:
  """`study`'s samples on the first two principal components of each representation,
  coloured and marked by label, with each clustering's ARI/NMI.

  Representations with the same scatter (expression and its own PCA share their first two
  components) share one panel, which lists the scores of each; the legend sits below.
  """
  labels = np.asarray(labels)
  classes = np.unique(labels)
  scatters = []   # [(coordinates, [(name, scores)])]
  for name, features in representations.items():
    scores = cluster_scores(features, labels)
    coordinates = pca_features(features, min(2, *np.shape(features)))
    if coordinates.shape[1] == 1:
      coordinates = np.column_stack([coordinates[:, 0], np.zeros(len(coordinates))])
    same = next((entry for entry in scatters if _same_scatter(entry[0], coordinates)), None)
    if same is None:
      scatters.append((coordinates, [(name, scores)]))
    else:
      same[1].append((name, scores))
  figure, axes = new_figure(1, len(scatters), (max(5.0 * len(scatters), 9.0), 5.5))
  for ax, (coordinates, named) in zip(axes[0], scatters):
    for i, label in enumerate(classes):
      rows = labels == label
      ax.scatter(coordinates[rows, 0], coordinates[rows, 1], s=14, color=f'C{i % 10}',
                 marker=MARKERS[i % len(MARKERS)], label=str(label))
    ax.set_title('\n'.join(f'{name}: ARI {s["ari"]:.3f}, NMI {s["nmi"]:.3f}'
                           for name, s in named), fontsize='medium')
    ax.set_xlabel('PC1 (arbitrary units)')
    ax.set_ylabel('PC2 (arbitrary units)')
  handles, names = axes[0, 0].get_legend_handles_labels()
  figure.legend(handles, names, loc='outside lower center', ncol=min(len(classes), 4),
                title='label', fontsize='small')
  figure.suptitle(f'{run_name(path)}: {study} samples ({len(labels)}) on their first two '
                  'principal components; hierarchical clustering vs labels')
  fileio.save_figure(path, figure)
