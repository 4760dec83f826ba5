"""Readers on the real files in ../shared/data and on files of the same layouts."""

import gzip
import os

import h5py
import numpy as np
import pandas as pd
import pytest

from configs import common
from landmark import fileio
from landmark.data import readers
from landmark.errors import ConfigError

STUDY_SIZES = {'bladderbatch': 57, 'GSE781': 17, 'chowdary': 104, 'nakayama': 105, 'borovecki': 31}
MORE_STUDY_SIZES = {'GSE1297': 16, 'GSE3585': 12, 'GSE6956': 26, 'GSE1145': 26, 'GSE14924': 41,
                    'GSE16759': 8, 'GSE20164': 11, 'GSE24739': 24, 'GSE38666': 45, 'GSE4183': 23,
                    'GSE3325': 19, 'bronchialIL13': 15}


def test_real_studies_combine_into_314_profiles(real_compendium):
  assert real_compendium.shape == (314, 22283)
  assert real_compendium.values.dtype == np.float32
  assert real_compendium.meta['study'].value_counts().to_dict() == STUDY_SIZES
  assert list(real_compendium.meta.index) == list(real_compendium.samples)
  assert real_compendium.meta.loc['GSM71019', 'label'] == 'Normal'
  l1000 = pd.read_csv(common.data_path('annotation', 'l1000_landmarks.tsv'), sep='\t', dtype=str)
  assert np.isin(l1000['probe'], real_compendium.features).sum() == 978


def test_17_real_studies_combine_on_their_shared_non_control_probes(real_compendium17):
  """GSE24739 ships no AFFX control probe and ten others lack some: the 17 studies share
  exactly HG-U133A's 22,215 non-control probes."""
  compendium = real_compendium17
  assert compendium.shape == (580, 22215)
  assert compendium.meta['study'].value_counts().to_dict() == {**STUDY_SIZES, **MORE_STUDY_SIZES}
  assert tuple(compendium.meta['study'].unique()) == common.COMPENDIUM_STUDIES
  probes = readers.read_probe_annotation(
      common.data_path('annotation', 'gpl96_probes.tsv'))['probe']
  assert set(compendium.features) == {p for p in probes if not p.startswith('AFFX')}
  # Each sample table labels its own folder's samples (GSE781's rows have no label).
  assert compendium.meta.loc['GSM71019', 'label'] == 'Normal'        # hgu133a/samples.tsv
  assert compendium.meta.loc['GSM21215', 'label'] == 'control'       # hgu133a_more/samples.tsv
  unlabelled = compendium.meta['label'].isna().groupby(compendium.meta['study']).all()
  assert unlabelled[unlabelled].index.tolist() == ['GSE781']


def test_sample_tables_are_a_tuple_and_list_each_sample_once(real_compendium, tmp_path):
  table = common.data_path('hgu133a', 'samples.tsv')
  with pytest.raises(ConfigError) as e:
    readers.attach_sample_table(real_compendium, table)
  assert e.value.where == 'config.data.samples_table' and f"write ('{table}',)" in str(e.value)
  again = tmp_path / 'again.tsv'
  again.write_text('sample\tlabel\nGSM71019\tTumor\n')
  with pytest.raises(readers.DataError) as e:
    readers.attach_sample_table(real_compendium, (table, str(again)))
  assert str(e.value) == f"{table}, {again}: 1 samples are listed more than once, e.g. ['GSM71019']"
  assert readers.attach_sample_table(real_compendium, ()) is real_compendium


def test_real_study_scales_differ(real_compendium):
  by_study = pd.Series(real_compendium.values.max(axis=1)).groupby(
      real_compendium.meta['study'].to_numpy()).max()
  assert by_study['bladderbatch'] < 20          # RMA, log2 already
  assert (by_study.drop('bladderbatch') > 1000).all()   # MAS5, linear


def test_real_cmap_file_is_read_by_content():
  """CMap's A375 plate is GCT 1.3 text under a .gctx name: content decides the reader."""
  path = common.data_path('l1000', 'A375_plate_n377x978.gctx')
  assert readers.sniff_format(path) == 'gct'
  plate = readers.read_any(path)
  assert plate.shape == (377, 978)
  assert abs(np.median(plate.values)) < 0.1     # robust z-scores, centred per probe
  assert np.isfinite(plate.values).all() and plate.values.std() > 0.5
  assert plate.meta.shape[1] > 30               # 37 column-metadata fields + study
  l1000 = pd.read_csv(common.data_path('annotation', 'l1000_landmarks.tsv'), sep='\t', dtype=str)
  assert set(plate.features) == set(l1000['probe'])   # the 978 landmark probes


def test_real_plate_as_gctx_in_chunks(tmp_path):
  plate = readers.read_any(common.data_path('l1000', 'A375_plate_n377x978.gctx'))
  path = str(tmp_path / 'plate.gctx')
  readers.write_gctx(path, plate, chunk_samples=64)
  assert readers.sniff_format(path) == 'gctx'
  with readers.GctxReader(path) as reader:
    chunks = np.concatenate([values for _, values in reader.iter_chunks(100)])
    assert reader.sample_meta().shape[1] == plate.meta.shape[1]
  np.testing.assert_array_equal(chunks, plate.values)
  np.testing.assert_array_equal(readers.read_any(path).samples, plate.samples)


def test_gctx_round_trip_and_feature_subset(real_compendium, tmp_path):
  small = real_compendium.take_samples(np.arange(40)).take_features(np.arange(300))
  path = str(tmp_path / 'small.gctx')
  readers.write_gctx(path, small, chunk_samples=7)
  back = readers.read_gctx(path, study='x')
  np.testing.assert_array_equal(back.values, small.values)
  np.testing.assert_array_equal(back.features, small.features)
  assert back.meta.loc[small.samples[0], 'label'] == small.meta['label'].iloc[0]
  with readers.GctxReader(path) as reader:
    np.testing.assert_array_equal(reader.read(5, 17, [3, 1, 200]),
                                  small.values[5:17][:, [3, 1, 200]])
  assert readers.read_gctx(path, max_samples=9).shape == (9, 300)


def _write_gct(path, frame, version, col_meta=None):
  with open(path, 'w') as f:
    if version == '1.2':
      f.write(f'#1.2\n{frame.shape[0]}\t{frame.shape[1]}\n')
      f.write('\t'.join(['Name', 'Description', *frame.columns]) + '\n')
      for probe, row in frame.iterrows():
        f.write('\t'.join([probe, 'na', *map(str, row)]) + '\n')
    else:
      f.write(f'#1.3\n{frame.shape[0]}\t{frame.shape[1]}\t1\t{len(col_meta)}\n')
      f.write('\t'.join(['id', 'gene', *frame.columns]) + '\n')
      for name, values in col_meta.items():
        f.write('\t'.join([name, 'na', *values]) + '\n')
      for probe, row in frame.iterrows():
        f.write('\t'.join([probe, 'g', *map(str, row)]) + '\n')


@pytest.mark.parametrize('version', ['1.2', '1.3'])
def test_gct(real_compendium, tmp_path, version):
  small = real_compendium.take_samples(np.arange(60, 72)).take_features(np.arange(50))
  frame = pd.DataFrame(small.values.T, index=small.features, columns=small.samples)
  path = str(tmp_path / 'x.gct')
  _write_gct(path, frame, version, {'label': list(small.meta['label'].fillna('').astype(str))})
  back = readers.read_gct(path)
  np.testing.assert_allclose(back.values, small.values, rtol=1e-6)
  np.testing.assert_array_equal(back.samples, small.samples)
  if version == '1.3':
    assert list(back.meta['label'].fillna('')) == list(small.meta['label'].fillna(''))


@pytest.mark.parametrize('sparse', [False, True])
def test_h5ad(real_compendium, tmp_path, sparse):
  import scipy.sparse
  small = real_compendium.take_samples(np.arange(8)).take_features(np.arange(20))
  values = np.where(small.values > 500, small.values, 0)   # real MAS5 values, sparsified
  path = str(tmp_path / 'x.h5ad')
  with h5py.File(path, 'w') as f:
    if sparse:
      csr = scipy.sparse.csr_matrix(values)
      group = f.create_group('X')
      group.attrs['encoding-type'] = 'csr_matrix'
      group.attrs['shape'] = values.shape
      for key in ('data', 'indices', 'indptr'):
        group.create_dataset(key, data=getattr(csr, key))
    else:
      f.create_dataset('X', data=values)
    for name, ids in (('obs', small.samples), ('var', small.features)):
      group = f.create_group(name)
      group.attrs['_index'] = '_index'
      group.create_dataset('_index', data=ids.astype('S'))
  back = readers.read_h5ad(path)
  np.testing.assert_array_equal(back.values, values)
  np.testing.assert_array_equal(back.features, small.features)


def _one_line_error(excinfo, path):
  message = str(excinfo.value)
  assert '\n' not in message and str(path) in message
  return message


def test_bad_input_missing_and_empty(tmp_path):
  with pytest.raises(readers.DataError, match='not found') as e:
    readers.read_any(str(tmp_path / 'nope.tsv'))
  _one_line_error(e, tmp_path / 'nope.tsv')
  empty = tmp_path / 'empty.tsv'
  empty.write_text('')
  with pytest.raises(readers.DataError, match='empty') as e:
    readers.read_any(str(empty))
  _one_line_error(e, empty)
  header_only = tmp_path / 'header.tsv'
  header_only.write_text('probe\tS1\tS2\n')
  with pytest.raises(readers.DataError, match='no data'):
    readers.read_any(str(header_only))


def test_bad_input_non_numeric_and_duplicates(tmp_path):
  bad = tmp_path / 'bad.tsv'
  bad.write_text('probe\tS1\tS2\n1007_s_at\t1.0\t2.0\n1053_at\t3.0\toops\n')
  with pytest.raises(readers.DataError, match="non-numeric.*'1053_at'.*'S2'.*oops") as e:
    readers.read_any(str(bad))
  _one_line_error(e, bad)
  dup = tmp_path / 'dup.tsv'
  dup.write_text('probe\tS1\tS2\n1007_s_at\t1.0\t2.0\n1007_s_at\t3.0\t4.0\n')
  with pytest.raises(readers.DataError, match='duplicate feature'):
    readers.read_any(str(dup))
  dup_samples = tmp_path / 'dups.csv'
  dup_samples.write_text('probe,S1,S1\n1007_s_at,1.0,2.0\n')
  with pytest.raises(readers.DataError, match='duplicate sample'):
    readers.read_any(str(dup_samples))


def test_bad_input_transposed_and_unknown_ids(real_compendium, tmp_path):
  known = real_compendium.features
  small = real_compendium.take_samples(np.arange(5)).take_features(np.arange(40))
  transposed = tmp_path / 'transposed.tsv.gz'
  with gzip.open(transposed, 'wt') as f:
    pd.DataFrame(small.values, index=small.samples, columns=small.features).to_csv(f, sep='\t')
  with pytest.raises(readers.DataError, match='transposed') as e:
    readers.check_orientation(readers.read_any(str(transposed)), known)
  _one_line_error(e, transposed)
  unknown = tmp_path / 'unknown.tsv'
  unknown.write_text('probe\tS1\nGENE_X\t1.0\nGENE_Y\t2.0\n')
  with pytest.raises(readers.DataError, match='known ID'):
    readers.check_orientation(readers.read_any(str(unknown)), known)


def test_bad_input_studies_share_no_features(tmp_path):
  a, b = tmp_path / 'a.tsv', tmp_path / 'b.tsv'
  a.write_text('probe\tS1\n1007_s_at\t1.0\n')
  b.write_text('probe\tS2\n1053_at\t1.0\n')
  with pytest.raises(readers.DataError, match='share no features'):
    readers.combine([readers.read_any(str(a)), readers.read_any(str(b))])


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
  path = tmp_path / 'result.tsv'
  fileio.write_text(path, 'old')
  with pytest.raises(RuntimeError):
    with fileio.atomic_path(path) as tmp:
      with open(tmp, 'w') as f:
        f.write('half')
      raise RuntimeError('crash mid-write')
  assert path.read_text() == 'old'
  assert [p.name for p in tmp_path.iterdir()] == ['result.tsv']


def _real_study_copy(tmp_path, name, transform=lambda raw: raw):
  """A copy of the real GSE781 study file, its bytes passed through `transform`."""
  with open(common.data_path('hgu133a', 'GSE781.tsv.gz'), 'rb') as f:
    raw = f.read()
  path = tmp_path / name
  path.write_bytes(transform(raw))
  return path


def _flip_bytes(raw, start=5000, n=64):
  flipped = bytearray(raw)
  flipped[start:start + n] = bytes(b ^ 0xFF for b in flipped[start:start + n])
  return bytes(flipped)


@pytest.mark.parametrize('name, transform, problem', [
    ('truncated.tsv.gz', lambda raw: raw[:len(raw) // 2], 'truncated gzip'),
    ('flipped.tsv.gz', _flip_bytes, 'gzip'),
    ('bad_crc.tsv.gz', lambda raw: raw[:-8] + b'\0\0\0\0' + raw[-4:], 'CRC'),
    ('not_gzip.tsv.gz', lambda raw: raw[:2] + b'\x07' + raw[3:], 'gzip'),
])
def test_corrupt_gzip_names_the_file(tmp_path, name, transform, problem):
  path = _real_study_copy(tmp_path, name, transform)
  with pytest.raises(readers.DataError, match=problem) as e:
    readers.read_any(str(path))
  _one_line_error(e, path)


def test_binary_file_read_as_a_table_names_the_file(tmp_path):
  path = tmp_path / 'binary.tsv'
  path.write_bytes(b'probe\t' + np.random.default_rng(0).bytes(4096))
  with pytest.raises(readers.DataError, match='not UTF-8 text') as e:
    readers.read_any(str(path))
  _one_line_error(e, path)


def test_malformed_gct_counts_line(tmp_path):
  path = tmp_path / 'x.gct'
  path.write_text('#1.3\n22283\tseventeen\n')
  with pytest.raises(readers.DataError, match='line 2 of a GCT 1.3 file needs 4 counts') as e:
    readers.read_any(str(path))
  _one_line_error(e, path)


def test_hdf5_without_gctx_matrix_is_a_gctx_problem(real_compendium, tmp_path):
  small = real_compendium.take_samples(np.arange(4)).take_features(np.arange(6))
  wrong_groups = tmp_path / 'wrong.gctx'
  with h5py.File(wrong_groups, 'w') as f:
    f.create_dataset('0/DATA/1/matrix', data=small.values)   # not where CMap puts it
  with pytest.raises(readers.DataError, match='no /0/DATA/0/matrix dataset') as e:
    readers.read_any(str(wrong_groups))
  assert 'h5ad' not in _one_line_error(e, wrong_groups)
  no_ids = tmp_path / 'no_ids.gctx'
  with h5py.File(no_ids, 'w') as f:
    f.create_dataset(readers.GCTX_MATRIX, data=small.values)
  with pytest.raises(readers.DataError, match='no /0/META/ROW/id dataset') as e:
    readers.read_any(str(no_ids))
  _one_line_error(e, no_ids)
  neither = tmp_path / 'unknown.h5'
  with h5py.File(neither, 'w') as f:
    f.create_dataset('expression', data=small.values)
  with pytest.raises(readers.DataError, match=r"neither GCTX .* nor h5ad .*\['expression'\]") as e:
    readers.read_any(str(neither))
  _one_line_error(e, neither)


def test_corrupt_hdf5_names_the_file(real_compendium, tmp_path):
  path = tmp_path / 'cut.gctx'
  readers.write_gctx(str(path), real_compendium.take_samples(np.arange(20)))
  path.write_bytes(path.read_bytes()[:100_000])   # signature intact, the rest cut off
  with pytest.raises(readers.DataError) as e:
    readers.read_any(str(path))
  _one_line_error(e, path)


def _write_sparse_h5ad(path, compendium, break_it):
  import scipy.sparse
  values = compendium.values
  csr = scipy.sparse.csr_matrix(np.where(values > np.median(values), values, 0))
  parts = {'data': csr.data, 'indices': csr.indices, 'indptr': csr.indptr}
  attrs = {'encoding-type': 'csr_matrix', 'shape': csr.shape}
  break_it(parts, attrs)
  with h5py.File(path, 'w') as f:
    group = f.create_group('X')
    group.attrs.update(attrs)
    for key, value in parts.items():
      group.create_dataset(key, data=value)
    for name, ids in (('obs', compendium.samples), ('var', compendium.features)):
      index = f.create_group(name)
      index.attrs['_index'] = '_index'
      index.create_dataset('_index', data=ids.astype('S'))


@pytest.mark.parametrize('break_it, problem', [
    (lambda parts, attrs: parts.pop('indptr'), 'sparse X lacks indptr'),
    (lambda parts, attrs: attrs.pop('shape'), 'sparse X lacks the shape attribute'),
    (lambda parts, attrs: parts.update(indices=parts['indices'] + 1000), 'malformed sparse X'),
    (lambda parts, attrs: parts.update(data=parts['data'][:-3]), 'malformed sparse X'),
    (lambda parts, attrs: attrs.update({'encoding-type': 'coo_matrix'}), "'coo_matrix'"),
])
def test_malformed_sparse_h5ad_names_the_file(real_compendium, tmp_path, break_it, problem):
  path = tmp_path / 'sparse.h5ad'
  small = real_compendium.take_samples(np.arange(8)).take_features(np.arange(20))
  _write_sparse_h5ad(path, small, break_it)
  with pytest.raises(readers.DataError, match=problem) as e:
    readers.read_any(str(path))
  _one_line_error(e, path)


def test_each_sample_knows_its_file(real_compendium):
  files = pd.Series(readers.sample_files(real_compendium)).map(os.path.basename)
  assert files.groupby(real_compendium.meta['study'].to_numpy()).unique().map(list).to_dict() == {
      study: [f'{study}.tsv.gz'] for study in STUDY_SIZES}


def test_messages_show_plain_ids(tmp_path):
  unknown = tmp_path / 'unknown.tsv'
  unknown.write_text('probe\tS1\nGENE_X\t1.0\nGENE_Y\t2.0\n')
  with pytest.raises(readers.DataError, match=r"\['GENE_X', 'GENE_Y'\]") as e:
    readers.check_orientation(readers.read_any(str(unknown)), ['1007_s_at'])
  assert 'np.str_' not in _one_line_error(e, unknown)


def test_binary_or_headerless_sample_table_names_the_file(real_compendium, tmp_path):
  binary = tmp_path / 'samples.tsv'
  binary.write_bytes(gzip.compress(b'sample\tstudy\n'))   # gzipped under a plain name
  with pytest.raises(readers.DataError, match='not UTF-8 text') as e:
    readers.attach_sample_table(real_compendium, (str(binary),))
  _one_line_error(e, binary)
  no_sample = tmp_path / 'labels.tsv'
  no_sample.write_text('gsm\tlabel\nGSM71019\tNormal\n')
  with pytest.raises(readers.DataError, match="needs a 'sample' column") as e:
    readers.attach_sample_table(real_compendium, (str(no_sample),))
  _one_line_error(e, no_sample)
