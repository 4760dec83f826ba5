"""Configs as code: argument strings, every config file, sweep members."""

import os

from absl import flags
from ml_collections import config_flags
import pytest

from configs import common
from configs import compendium
from configs import cross_study
from configs import default
from configs import quick
from configs import study_effects
from configs import study_scaling
from configs import sweep as sweep_config
from configs import test as test_config
from landmark import errors
from landmark import sweep
from landmark import validation
from landmark.training import train


def test_parse_arg_casts_flags_and_lists():
  parsed = common.parse_arg('epochs=5,quick,bottleneck=25+50+400,name=x,rate=0.5',
                            epochs=100, quick=False, bottleneck=(100,), name='', rate=1.0)
  assert parsed.epochs == 5 and parsed.quick is True and parsed.name == 'x'
  assert parsed.bottleneck == (25, 50, 400) and parsed.rate == 0.5
  assert common.parse_arg('bottleneck=25', bottleneck=(100,)).bottleneck == (25,)
  assert common.parse_arg('', epochs=1).epochs == 1


@pytest.mark.parametrize('value, expected', [('true', True), ('False', False), ('1', True),
                                             ('0', False), ('yes', True), ('NO', False)])
def test_parse_arg_booleans_are_strict(value, expected):
  assert common.parse_arg(f'bf16={value}', bf16=not expected).bf16 is expected


@pytest.mark.parametrize('arg, defaults, field, problem', [
    ('bf16=flase', dict(bf16=False), 'bf16', "'flase' is not a bool"),
    ('bf16=', dict(bf16=False), 'bf16', "'' is not a bool"),
    ('epochs=abc', dict(epochs=1), 'epochs', "'abc' is not an int"),
    ('rate=fast', dict(rate=1.0), 'rate', "'fast' is not a float"),
    ('epochs', dict(epochs=1), 'epochs', 'needs a value'),
    ('nope=1', dict(epochs=1), 'nope', 'unknown; known: epochs'),
    # A comma always starts a new argument: the old comma list reads as an unknown key...
    ('holdout=chowdary,GSE781', dict(holdout=('a',)), 'GSE781', 'unknown'),
    # ...and a list item that is no number names the list's argument.
    ('bottleneck=25+bf16', dict(bottleneck=(100,), bf16=False), 'bottleneck',
     "'bf16' is not an int"),
    ('bottleneck=25++50', dict(bottleneck=(100,)), 'bottleneck', 'empty item'),
])
def test_parse_arg_names_the_bad_argument(arg, defaults, field, problem):
  with pytest.raises(errors.ConfigError, match=problem) as raised:
    common.parse_arg(arg, **defaults)
  assert raised.value.where == f'config argument {field}'


def test_bad_config_argument_is_a_config_error_on_the_command_line():
  with pytest.raises(errors.ConfigError, match='config argument epochs') as raised:
    test_config.get_config('epochs=abc')
  assert str(raised.value) == "config argument epochs: 'abc' is not an int"
  # main.py's --config flag: config_flags re-raises it as type(error)(message), which absl
  # reports as a bad flag value with that message.
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'Configuration file.', flag_values=flag_values)
  path = os.path.join(common.REPO, 'configs', 'test.py')
  with pytest.raises(flags.IllegalFlagValueError,
                     match="config argument epochs: 'abc' is not an int"):
    flag_values(['main.py', f'--config={path}:epochs=abc'])


@pytest.mark.parametrize('module', [compendium, cross_study, default, quick, study_effects,
                                    study_scaling, sweep_config, test_config])
def test_every_config_builds_with_paper_defaults(module):
  config = module.get_config()
  paper_ae = module in (default, test_config)   # the others build on quick.py's AE
  assert config.model.activation == ('sigmoid' if paper_ae else quick.AE['model.activation'])
  assert config.train.l2 == (1e-6 if paper_ae else quick.AE['train.l2'])
  assert config.deeplift.top_k == 943


def test_quick_paper_restores_the_papers_autoencoder():
  paper, ours, base = quick.get_config('paper'), quick.get_config(), common.base_config()
  for field in quick.AE:
    section, key = field.split('.')
    assert paper[section][key] == base[section][key]
    assert ours[section][key] == quick.AE[field]
  assert paper.train.batch_size == ours.train.batch_size == 32
  train.check_config(paper)
  train.check_config(ours)


def test_default_config_is_the_paper_at_full_scale():
  config = default.get_config('gctx=/data/bgedv2_QNORM.gctx,bottleneck=50')
  assert config.data.studies == ('/data/bgedv2_QNORM.gctx',)
  assert config.model.bottleneck == 50 and config.train.epochs == 100
  assert tuple(config.dgex.hidden) == (9000, 9000, 9000)
  assert config.model.compute_dtype == 'float32' and config.data.stream
  config = default.get_config('bottleneck=50,bf16,stream=no')
  assert config.model.compute_dtype == config.dgex.compute_dtype == 'bfloat16'
  assert not config.data.stream and config.preprocess.dedup


def test_sweep_members_override_one_field():
  config = sweep_config.get_config('bottleneck=25+400,epochs=2')
  assert tuple(config.sweep.grid) == (25, 400)
  member = sweep.member_config(config, config.sweep.parameter, 400)
  assert member.model.bottleneck == 400 and 'sweep' not in member
  assert member.train.epochs == 2 and config.model.bottleneck == 100


def test_study_effects_grid_parses():
  config = study_effects.get_config(
      'holdout=chowdary+GSE781,correction=none,models=ridge,seeds=2')
  assert tuple(config.study_effects.holdouts) == ('chowdary', 'GSE781')
  assert tuple(config.study_effects.corrections) == ('none',)
  assert tuple(config.study_effects.references) == ('zeros', 'train_mean')
  assert tuple(config.evaluate.models) == ('ridge',) and config.study_effects.seeds == 2
  assert config.preprocess.split == 'leave_study_out'


def test_cross_study_sweeps_every_held_out_study():
  config = cross_study.get_config()
  assert tuple(config.sweep.grid) == common.HGU133A_STUDIES
  member = sweep.member_config(config, config.sweep.parameter, 'chowdary')
  assert member.preprocess.split == 'leave_study_out'
  assert member.preprocess.holdout_study == 'chowdary'


def test_compendium_is_quick_on_17_studies_and_sweeps_study_folds():
  config = compendium.get_config('epochs=20')
  assert len(config.data.studies) == 17 and len(config.data.samples_table) == 2
  assert all(os.path.exists(path) for path in config.data.studies + config.data.samples_table)
  assert config.train.epochs == 20 and config.seeds == 3 and config.preprocess.split == 'random'
  assert config.preprocess.study_correction == 'center' and config.deeplift.reference == 'zeros'
  assert 'sweep' not in config
  config = compendium.get_config('folds=5')
  assert tuple(config.sweep.grid) == (0, 1, 2, 3, 4)
  member = sweep.member_config(config, config.sweep.parameter, 3)
  assert member.preprocess.split == 'study_kfold' and member.preprocess.fold == 3
  assert tuple(compendium.get_config('folds=5,fold=2').sweep.grid) == (2,)
  with pytest.raises(errors.ConfigError, match='config argument fold: needs folds=N'):
    compendium.get_config('fold=2')


@pytest.mark.parametrize('selector, problem', [
    ('deeplift_ae', 'must be one of'),          # needs the AE: the run's own DeepLIFT panel
    ('l1000', 'must be one of'),                # scored by every run anyway
    ('greedy', "got 'greedy'"),
])
def test_a_selector_the_run_cannot_add_is_a_config_error(selector, problem):
  config = test_config.get_config()
  config.selector = selector
  with pytest.raises(errors.ConfigError, match=problem) as raised:
    validation.check_config(config)
  assert raised.value.where == 'config.selector'
  config.selector = 'greedy_ridge_standardised'
  validation.check_config(config)
