"""Learning from image-level labels (tags): CAMs from a tag classifier, boundaries by
multiple-instance learning on pixel pairs, and random-walk pseudo labels.

The functional layer (pooling, the tag loss, CAMs, confident areas, path indexing, the
boundary MIL loss, the random walk); the round pipeline that uses it is
``alseg.extensions.image_labels`` (``labeling=image``). Not built yet: the semantic-boundary
F-measure and the SBD / VOC layouts.
"""
