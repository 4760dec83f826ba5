"""Configs as code: argument strings, every config file, sweep members."""

import pytest

from configs import common
from configs import cross_study
from configs import default
from configs import quick
from configs import study_effects
from configs import sweep as sweep_config
from configs import test as test_config
from landmark import sweep


def test_parse_arg_casts_flags_and_lists():
  parsed = common.parse_arg('epochs=5,quick,bottleneck=25,50,400,name=x',
                            epochs=100, quick=False, bottleneck=(100,), name='')
  assert parsed.epochs == 5 and parsed.quick is True and parsed.name == 'x'
  assert parsed.bottleneck == (25, 50, 400)
  with pytest.raises(ValueError, match="Unknown config argument 'nope'"):
    common.parse_arg('nope=1', epochs=1)


@pytest.mark.parametrize('module', [cross_study, default, quick, study_effects, sweep_config,
                                    test_config])
def test_every_config_builds_with_paper_defaults(module):
  config = module.get_config()
  assert config.model.activation == 'sigmoid' and config.train.l2 == 1e-6
  assert config.deeplift.top_k == 943


def test_default_config_is_the_paper_at_full_scale():
  config = default.get_config('gctx=/data/bgedv2_QNORM.gctx,bottleneck=50')
  assert config.data.studies == ('/data/bgedv2_QNORM.gctx',)
  assert config.model.bottleneck == 50 and config.train.epochs == 100
  assert tuple(config.dgex.hidden) == (9000, 9000, 9000)


def test_sweep_members_override_one_field():
  config = sweep_config.get_config('bottleneck=25,400,epochs=2')
  assert tuple(config.sweep.grid) == (25, 400)
  member = sweep.member_config(config, config.sweep.parameter, 400)
  assert member.model.bottleneck == 400 and 'sweep' not in member
  assert member.train.epochs == 2 and config.model.bottleneck == 100


def test_study_effects_grid_parses():
  config = study_effects.get_config('holdout=chowdary,GSE781,correction=none,models=ridge,seeds=2')
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
