"""Closed forms of model collapse, one family per module, each a set of pure functions.

- :mod:`~collapselab.theory.linreg`: Gerstgrasser et al. (2024) / Dey & Donoho (2024): OLS
  refitted on its own labels; replace grows linearly, accumulate stays under pi^2/6.
- :mod:`~collapselab.theory.stability`: Bertrand et al. (ICLR 2024): a Gaussian MLE retrained on
  all the real data plus its own samples; exact moment recursion, fixed point, contraction.
- :mod:`~collapselab.theory.zipf`: Dohmatob et al. (ICML 2024, ICLR 2025): Zipf data, a generator
  that cuts the tail, the memoriser's and the frequency estimator's errors and their plateaus.
- :mod:`~collapselab.theory.categorical`: Seddik et al. (2024): a categorical (next-token) model
  refitted by counts; collapse to a Dirac, and the fixed point when real data are mixed in.

docs/theory.md states each setup, derivation and what the tests check.
"""
