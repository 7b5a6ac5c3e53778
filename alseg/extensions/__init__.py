"""Method plug-ins of the round machine (``alseg.loop.ActiveLoop``), one module per method:

* ``continuous`` — selections during one training run (RIPU, LAMDA);
* ``stage2`` — MulActSeg's stage 2: pseudo labels, then retraining;
* ``sieve`` — adaptive superpixels' label sieving;
* ``label_matching`` — LAMDA's target label-distribution estimate and source re-sampling.

Each is an ``Extension`` (``base``) chosen by the config (``alseg.build``).
"""
