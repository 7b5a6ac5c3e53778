"""Debiasing by data re-weighting: which labeled samples to trust, and how much.

A spurious attribute (colour, background, gender) that predicts the class in most
training samples teaches a classifier the wrong rule. The methods here re-weight the
training samples so that the few *bias-conflicting* ones count more, mostly without
knowing the bias attribute:

- ``lwbc``: learning with a biased committee (Kim et al., NeurIPS 2022): weight
  1 / (share of committee members that are right + alpha);
- ``jtt``: just train twice (Liu et al., ICML 2021): up-weight the training errors of an
  early-stopped model;
- ``lff``: learning from failure (Nam et al., NeurIPS 2020): relative difficulty for a
  biased (generalised CE) model;
- ``erm`` (no weights) and ``groupdro`` (group labels; an upper bound).

All train a small head on frozen features of a backbone (``alseg.debias.features``),
computed once and cached; the weights are saved with the run (``weights.parquet``) so that
they can re-weight another training run. Formulas and fidelity notes: docs/methods.md.
"""
