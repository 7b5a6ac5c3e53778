"""Data filtering for language models (issue in progress): the embedded instruction set
with defects at known rates (``instructions``) and the published text scores as pure
functions (``scores``). The causal-LM module, the score -> keep -> fine-tune protocol and
its results are not built yet (docs/methods.md, section J)."""
