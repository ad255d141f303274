"""Image classifiers of the zoo: common metadata and the name -> builder table.

Every classifier takes a (B, 3, H, W) float image already scaled to [0, 1] and normalised with ``mean``/``std``
(ImageNet statistics) and returns (B, num_classes) logits. The metadata attributes are plain Python values, so
they never enter the state_dict.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

Names = Union[Sequence[str], Mapping[int, str], None]


def imagenet_names() -> Dict[int, str]:
    """The 1000 ImageNet-1k category names in torchvision's order (read from torchvision's weight metadata,
    which ships with the package; nothing is downloaded)."""
    from torchvision.models import MobileNet_V2_Weights

    return dict(enumerate(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]))


def class_names(num_classes: int, names: Names = None) -> Dict[int, str]:
    """Normalise class names to ``{id: name}``.

    Args:
        num_classes: number of classes of the model.
        names: a list or dict of names, or None for ImageNet names (1000 classes) or ``"0", "1", …``.

    Raises:
        ValueError: the number of names differs from ``num_classes``.
    """
    if names is None:
        return imagenet_names() if num_classes == 1000 else {i: str(i) for i in range(num_classes)}
    table = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    if sorted(table) != list(range(num_classes)):
        raise ValueError(f"names must give one name for each of the {num_classes} classes 0..{num_classes - 1}")
    return {int(k): str(v) for k, v in table.items()}


class ImageClassifier(nn.Module):
    """Base class of the zoo's classifiers: holds what a deployment needs to know besides the weights.

    Attributes:
        task: always ``"classify"``.
        names: ``{class id: name}``.
        imgsz: training/evaluation input size in pixels (square).
        mean, std: per-channel RGB normalisation applied to [0, 1] inputs.
        head_prefixes: state_dict prefixes of the layers that depend on ``num_classes``.
        config: the :func:`build_classifier` arguments (``arch``, ``num_classes``, options) that rebuild the
            model for a saved state_dict; empty when the class was instantiated directly.
    """

    task = "classify"
    head_prefixes: Tuple[str, ...] = ()

    def __init__(self, num_classes: int, names: Names = None, imgsz: int = 224) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        self.num_classes = num_classes
        self.names = class_names(num_classes, names)
        self.imgsz = imgsz
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.config: Dict[str, Any] = {}


ClassifierBuilder = Callable[..., ImageClassifier]
CLASSIFIERS: Dict[str, ClassifierBuilder] = {}


def register_classifier(name: str, builder: ClassifierBuilder) -> None:
    """Make ``build_classifier(name, …)`` call ``builder(num_classes=…, **kwargs)``.

    Raises:
        ValueError: the name is registered already.
    """
    if name in CLASSIFIERS:
        raise ValueError(f"classifier {name!r} is registered already")
    CLASSIFIERS[name] = builder


def list_classifiers() -> List[str]:
    """Names accepted by :func:`build_classifier`, sorted."""
    return sorted(CLASSIFIERS)


def build_classifier(arch: str, num_classes: int = 1000, names: Names = None, **kwargs) -> ImageClassifier:
    """Build a zoo classifier.

    Args:
        arch: one of :func:`list_classifiers` (``mobilenetv2``, ``shufflenetv2_x0_5``, ``shufflenetv2_x1_0``,
            ``shufflenetv1_g3``, ``squeezenet1_1``).
        num_classes: number of output logits; 1000 keeps the ImageNet head (and ImageNet names).
        names: class names (list or dict), optional.
        **kwargs: architecture options, e.g. ``width_mult``.

    Returns:
        The classifier, in training mode, randomly initialised.

    Raises:
        ValueError: ``arch`` is unknown (the message lists the known ones).
    """
    builder: Optional[ClassifierBuilder] = CLASSIFIERS.get(arch)
    if builder is None:
        raise ValueError(f"unknown classifier {arch!r}; choose one of: {', '.join(list_classifiers())}")
    model = builder(num_classes=num_classes, names=names, **kwargs)
    model.config = {"arch": arch, "num_classes": num_classes, **kwargs}
    return model
