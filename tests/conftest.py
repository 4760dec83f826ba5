"""Shared fixtures: the real HG-U133A compendium, read once per test session."""

import os

import pytest

from configs import common
from landmark import data


def pytest_configure(config):
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')


@pytest.fixture(scope='session')
def real_config():
  return common.base_config()


@pytest.fixture(scope='session')
def real_compendium(real_config):
  """The five real studies combined: 314 samples x 22,283 probes, raw values."""
  return data.load_compendium(real_config.data)
