"""torchvision behind the network protocol (issue 28): its own constructors, arguments renamed, nothing
else.  EfficientNet(w, d, n) is what its efficientnet_b0 builds at other factors (its own generator,
`_efficientnet_conf`, with B0's dropout 0.2 and its default stochastic depth 0.2)."""

from torchvision.models import efficientnet as _tv


def EfficientNet(w_factor=1, d_factor=1, n_classes=1000):  # noqa: N802 - the tutorial's name
    setting, last_channel = _tv._efficientnet_conf("efficientnet_b0", width_mult=w_factor, depth_mult=d_factor)
    return _tv.EfficientNet(setting, 0.2, 0.2, n_classes, last_channel=last_channel)


def _variant(name):
    return lambda n_classes=1000: getattr(_tv, f"efficientnet_{name}")(num_classes=n_classes)


for _n in range(8):
    globals()[f"efficientnet_b{_n}"] = _variant(f"b{_n}")
