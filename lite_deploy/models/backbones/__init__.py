"""Lightweight backbones of the zoo: ImageNet classifiers and the yaml backbone layers of its detectors.

Importing this package registers the yaml modules (``MobileNetV2Features``, ``ShuffleNetV2Features``,
``SqueezeNetFeatures``, ``Shuffle_Block``, ``conv_bn_relu_maxpool``, ``stem``, ``FusedMBConv``, ``MBConv``) and
the classifiers of :func:`build_classifier`.
"""

from __future__ import annotations

from .classifier import IMAGENET_MEAN, IMAGENET_STD, ImageClassifier, build_classifier, list_classifiers
from .efficientnetv2 import DropPath, FusedMBConv, MBConv, SqueezeExcite, Stem
from .mobilenetv2 import MobileNetV2Classifier, MobileNetV2Features
from .shuffle import ChannelShuffle, channel_shuffle_index
from .shufflenetv1 import ShuffleNetV1Classifier
from .shufflenetv2 import ShuffleNetV2Classifier, ShuffleNetV2Features
from .squeezenet import SqueezeNetClassifier, SqueezeNetFeatures
from .torchvision_weights import TorchvisionLoadReport, TorchvisionSlice, load_torchvision_backbone

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ChannelShuffle",
    "DropPath",
    "FusedMBConv",
    "ImageClassifier",
    "MBConv",
    "MobileNetV2Classifier",
    "MobileNetV2Features",
    "ShuffleNetV1Classifier",
    "ShuffleNetV2Classifier",
    "ShuffleNetV2Features",
    "SqueezeExcite",
    "SqueezeNetClassifier",
    "SqueezeNetFeatures",
    "Stem",
    "TorchvisionLoadReport",
    "TorchvisionSlice",
    "build_classifier",
    "channel_shuffle_index",
    "list_classifiers",
    "load_torchvision_backbone",
]
