"""Data pruning: which labeled samples to keep.

Scores are per-sample statistics recorded while a model trains on the full labeled set
(``alseg.prune.callbacks``): EL2N and GraNd at given epochs, forgetting events, dynamic
uncertainty and the area under the margin from the training dynamics. A selection rule
(``alseg.prune.select``) keeps a fraction of the samples by a score; the kept subset is
retrained from scratch with as many iterations as the full run (``alseg.prune.run``).
For segmentation a sample is an image and its score the mean of a pixel score over its
labeled pixels. Formulas and fidelity notes: docs/methods.md.
"""
