"""Building blocks for writing a method or a weight source: the public training API.

Everything here is defined once in the method layer (:mod:`sketchbench.method.training`,
:mod:`sketchbench.method.weights`) and re-exported, so a plugin imports from one stable place::

    from sketchbench.training import Trainer, create_backbone, triplet_epochs, triplet_loss

- inputs and backbones: :func:`to_input`, :func:`edge_map`, :func:`create_backbone`,
  :class:`PooledFeatures`, :func:`load_weights`, :func:`match_keys`;
- triplets: :func:`triplet_loss`, :func:`sample_negatives`, :func:`triplet_batches`,
  :func:`triplet_epochs` (the loop every triplet-trained method shares), :class:`TripletBatch`,
  :func:`random_flip`, :func:`random_shift`;
- pretrained starts: :func:`freeze_batchnorm`, :func:`split_backbone` and :func:`frozen_features`
  (freeze the early stages and compute them once per image);
- the loop: :class:`Trainer` (optimiser, AMP on CUDA, NaN detection, progress bar),
  :func:`embed_in_batches`, :func:`seed_everything`;
- weight sources: :class:`WeightSource`, :class:`PackageFileSource`, :class:`WeightsIdentity`,
  :func:`map_by_order`, :func:`load_complete`, :func:`weights_dir`, :func:`fetch_wheel_member`.
"""

from sketchbench.method.backbones import (
    PooledFeatures,
    create_backbone,
    freeze_batchnorm,
    frozen_features,
    load_weights,
    match_keys,
    split_backbone,
)
from sketchbench.method.inputs import IMAGENET_MEAN, IMAGENET_STD, edge_map, random_flip, random_shift, to_input
from sketchbench.method.training import Trainer, embed_in_batches, seed_everything
from sketchbench.method.triplets import TripletBatch, sample_negatives, triplet_batches, triplet_epochs, triplet_loss
from sketchbench.method.weights import (
    PackageFileSource,
    WeightsIdentity,
    WeightSource,
    fetch_wheel_member,
    load_complete,
    map_by_order,
    weights_dir,
)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PackageFileSource", "PooledFeatures", "Trainer", "TripletBatch", "WeightSource",
    "WeightsIdentity", "create_backbone", "edge_map", "embed_in_batches", "fetch_wheel_member", "freeze_batchnorm", "frozen_features", "load_complete",
    "load_weights", "map_by_order", "match_keys", "random_flip", "random_shift", "sample_negatives", "seed_everything",
    "split_backbone", "to_input", "triplet_batches", "triplet_epochs", "triplet_loss", "weights_dir",
]
