"""efficientnet-pytorch behind the network protocol (issue 28): its own constructors, arguments renamed,
nothing else.  EfficientNet(w, d, n) is the library's documented way to other factors:
`EfficientNet.from_name("efficientnet-b0", width_coefficient=w, depth_coefficient=d)`."""

from efficientnet_pytorch import EfficientNet as _Library


def EfficientNet(w_factor=1, d_factor=1, n_classes=1000):  # noqa: N802 - the tutorial's name
    kw = {"width_coefficient": w_factor, "depth_coefficient": d_factor, "num_classes": n_classes}
    return _Library.from_name("efficientnet-b0", **kw)


def _variant(name):
    return lambda n_classes=1000: _Library.from_name(f"efficientnet-{name}", num_classes=n_classes)


for _n in range(8):
    globals()[f"efficientnet_b{_n}"] = _variant(f"b{_n}")
