"""Pretrained weights from timm or torchvision (clause EXT-2).

timm's ``efficientnet_bN`` and torchvision's ``efficientnet_bN`` hold their parameters and
buffers in the same order and with the same shapes as effnet's models (clause API-4), under
other names.  ``load_reference_weights`` matches them by position and checks every shape, so a
checkpoint of another variant fails with the first tensor that does not fit instead of loading
half-way.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

from torch import nn

__all__ = ["load_reference_weights"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)

# torchvision's B5, B6 and B7 (heads of 2048, 2304 and 2560 channels) were ported from TensorFlow
# and normalise with BatchNorm eps 1e-3; B0-B4 (heads up to 1792) use PyTorch's 1e-5, as effnet.
_TORCHVISION_TF_EPS_HEAD = 2048
_COUNTER = "num_batches_tracked"


def load_reference_weights(model: ModuleT, state_dict: Mapping[str, Any]) -> ModuleT:
    """Load a timm or torchvision EfficientNet ``state_dict`` into ``model`` by position; return ``model``.

    ``model`` is the matching effnet model (``efficientnet_b3()`` for B3 weights, with the same
    ``n_classes``), as ``EfficientNet`` or ``EfficientNetSequential``.  Every tensor must have the
    shape of the model's tensor at the same position; BatchNorm ``num_batches_tracked`` counters
    are copied when the checkpoint has them and may be missing (older checkpoints).

    Raises ``ValueError`` naming the first tensor that does not fit, by its name in the
    checkpoint and in the model, or the two counts when one has more tensors than the other.

    torchvision's ``efficientnet_b5``-``b7`` weights were trained with BatchNorm eps 1e-3
    (effnet uses 1e-5): they load, with a warning, and match torchvision's outputs only after
    ``m.eps = 1e-3`` for every ``nn.BatchNorm2d`` ``m``.  timm's ``tf_efficientnet_bN`` weights
    have the same shapes but were trained for TensorFlow's asymmetric "same" padding and eps
    1e-3: they load, but effnet does not compute the function they were trained for.
    """
    source = _without_counters(state_dict)
    target = _without_counters(model.state_dict())
    for i, ((key, tensor), (model_key, model_tensor)) in enumerate(zip(source, target, strict=False)):
        if tuple(tensor.shape) != tuple(model_tensor.shape):
            raise ValueError(
                f"state_dict tensor {i} {key!r} has shape {tuple(tensor.shape)}, but the model's {model_key!r} "
                f"has shape {tuple(model_tensor.shape)}: is the checkpoint of another variant or n_classes?"
            )
    if len(source) != len(target):
        longer, side = (source, "state_dict") if len(source) > len(target) else (target, "model")
        raise ValueError(
            f"the state_dict has {len(source)} parameters and statistics (besides {_COUNTER}), the model "
            f"{len(target)}; the first unmatched is the {side}'s {longer[min(len(source), len(target))][0]!r}"
        )

    matched = {model_key: tensor for (_, tensor), (model_key, _) in zip(source, target, strict=True)}
    counters = [key for key in state_dict if key.endswith(_COUNTER)]
    model_counters = [key for key in model.state_dict() if key.endswith(_COUNTER)]
    if len(counters) == len(model_counters):
        matched.update({m: state_dict[k] for k, m in zip(counters, model_counters, strict=True)})
    model.load_state_dict(matched, strict=False)  # everything but the counters is in `matched`
    _warn_if_torchvision_tf_eps(state_dict)
    return model


def _without_counters(state_dict: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in state_dict.items() if not k.endswith(_COUNTER)]


def _warn_if_torchvision_tf_eps(state_dict: Mapping[str, Any]) -> None:
    classifier = state_dict.get("classifier.1.weight")  # torchvision's names; timm's is "classifier.weight"
    if classifier is None or "features.0.0.weight" not in state_dict:
        return
    if classifier.shape[1] >= _TORCHVISION_TF_EPS_HEAD:
        warnings.warn(
            "these look like torchvision's efficientnet_b5/b6/b7 weights, trained with BatchNorm eps 1e-3; "
            "effnet uses 1e-5: set eps = 1e-3 on every nn.BatchNorm2d to compute torchvision's function",
            UserWarning,
            stacklevel=3,
        )
