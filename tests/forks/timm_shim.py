"""timm behind the network protocol (issue 28): its own constructors, arguments renamed, nothing else;
the training rates of its factories' comments, as tests/forks/timm_adapter.py passes them."""

from timm.models import efficientnet as _timm

_DROP = {"b0": 0.2, "b1": 0.2, "b2": 0.3, "b3": 0.3, "b4": 0.4, "b5": 0.4, "b6": 0.5, "b7": 0.5}


def EfficientNet(w_factor=1, d_factor=1, n_classes=1000):  # noqa: N802 - the tutorial's name
    kw = {"channel_multiplier": w_factor, "depth_multiplier": d_factor, "num_classes": n_classes}
    return _timm._gen_efficientnet("efficientnet_b0", drop_rate=0.2, drop_path_rate=0.2, **kw)


def _variant(name):
    build = getattr(_timm, f"efficientnet_{name}")
    return lambda n_classes=1000: build(num_classes=n_classes, drop_rate=_DROP[name], drop_path_rate=0.2)


for _name in _DROP:
    globals()[f"efficientnet_{_name}"] = _variant(_name)
