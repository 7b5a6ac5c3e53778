"""Learning from image-level labels (tags): CAMs from a tag classifier, boundaries by
multiple-instance learning on pixel pairs, and random-walk pseudo labels.

This package holds the functional layer (pooling, the tag loss, CAMs, confident areas,
path indexing, the boundary MIL loss, the random walk). The end-to-end pipeline
(``labeling=image``, ``experiment=image_labels_synthetic``) is not built yet.
"""
