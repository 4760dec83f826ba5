"""landmark: find the genes from which a transcriptome can be inferred (Kong et al. 2021).

`design_panel`, `find_landmarks` and `compare_panels` (landmark.api) are the notebook entry
points. They are loaded on first use, so importing one of the package's modules does not
load the pipeline.
"""

API = ('design_panel', 'find_landmarks', 'compare_panels')


def __getattr__(name: str):
  """landmark.design_panel, find_landmarks and compare_panels, imported from landmark.api."""
  if name in API:
    from landmark import api
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
