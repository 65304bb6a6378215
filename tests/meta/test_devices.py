"""tests/support/devices.py: ``no_tf32`` switches TF32 off and restores what was set before, whichever
of torch's two APIs set it; the tolerance table knows each device the suite runs on.  The TF32
flags are process-wide settings, so this runs without a GPU."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.support import devices


@pytest.fixture
def tf32_on() -> Iterator[None]:
    """TF32 on through the legacy flags (as a user's script might set it); the defaults after."""
    saved = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])


@pytest.mark.usefixtures("tf32_on")
def test_no_tf32_switches_tf32_off_and_restores_it():
    with devices.no_tf32():
        inside = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    after = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    assert inside == (False, "highest"), f"inside no_tf32: (cudnn.allow_tf32, matmul precision) = {inside}"
    assert after == (True, "high"), f"after no_tf32: (cudnn.allow_tf32, matmul precision) = {after}, not restored"


@pytest.mark.usefixtures("tf32_on")
def test_no_tf32_restores_after_an_exception():
    with pytest.raises(AssertionError), devices.no_tf32():
        raise AssertionError("a failing comparison")
    after = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    assert after == (True, "high"), f"after a failure inside no_tf32: {after}, not restored"


def test_no_tf32_works_when_the_new_fp32_precision_api_is_in_use():
    """Once ``fp32_precision`` is set, torch refuses to read the legacy flags ("a mix of the legacy and
    new APIs"); no_tf32 then sets and restores the new properties."""
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    saved = [b.fp32_precision for b in backends]
    try:
        for b in backends:
            b.fp32_precision = "tf32"
        with devices.no_tf32():
            inside = [b.fp32_precision for b in backends]
        after = [b.fp32_precision for b in backends]
    finally:
        for b, value in zip(backends, saved, strict=True):
            b.fp32_precision = value
    assert inside == ["ieee", "ieee"], f"inside no_tf32: (matmul, cudnn.conv) fp32_precision = {inside}"
    assert after == ["tf32", "tf32"], f"after no_tf32: (matmul, cudnn.conv) fp32_precision = {after}, not restored"


def test_tolerance_table_covers_the_devices_of_the_device_option():
    for name in ("cpu", "cuda"):
        assert devices.float32_tolerances(torch.device(name)).capture > 0
    with pytest.raises(ValueError, match="'meta'"):
        devices.float32_tolerances(torch.device("meta"))
