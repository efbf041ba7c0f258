"""Hyperparameter tuning: Katib's Experiment and Trial on Optuna's samplers and pruners.

* :mod:`space` — Katib's parameters as Optuna distributions, and back to Katib's values;
* :mod:`algorithms` — Katib's algorithm names onto Optuna samplers and pruners;
* :mod:`search` — a study rebuilt from the Trials in the store (the store is the only
  state: a server restart resumes exactly where the search was);
* :mod:`trials` and :mod:`experiments` — the two controllers.
"""
