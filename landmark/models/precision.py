"""Compute dtypes of the models: float32 parameters, layers computing in the config's dtype."""

import jax.numpy as jnp
from jax.typing import DTypeLike

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str, field: str) -> DTypeLike:
  """The jnp dtype of a config's `compute_dtype` string; `field` names it in the error."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'{field} must be one of {sorted(COMPUTE_DTYPES)}, got {name!r}')
  return COMPUTE_DTYPES[name]
