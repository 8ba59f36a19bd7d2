"""Uploaded samples: raw 8-bit pixels on the wire, the same floats on the server."""

import numpy as np
import pytest
import torch

from edgeupdate.datasets import NORMALIZATION, load_dataset
from edgeupdate.datasets.codec import SampleCodecError, decode_samples, encode_samples


def test_round_trip_is_exact_and_costs_one_byte_per_pixel():
    ds = load_dataset("digits")
    part = ds.train.subset(torch.arange(25))
    payload = encode_samples(part, NORMALIZATION["digits"])
    assert len(payload) == 15 + 25 * (1 + 64)
    back = decode_samples(payload, NORMALIZATION["digits"])
    assert torch.equal(back.x, part.x) and torch.equal(back.y, part.y)


def test_empty_upload_round_trips():
    ds = load_dataset("digits")
    empty = ds.train.subset(torch.arange(0))
    assert len(decode_samples(encode_samples(empty, NORMALIZATION["digits"]), NORMALIZATION["digits"])) == 0


@pytest.mark.parametrize("cut", [0, 5, 20, -1])
def test_truncated_or_mangled_payloads_raise(cut):
    ds = load_dataset("digits")
    payload = encode_samples(ds.train.subset(torch.arange(3)), NORMALIZATION["digits"])
    bad = payload[:cut] if cut >= 0 else b"XXXX" + payload[4:]
    with pytest.raises(SampleCodecError):
        decode_samples(bad, NORMALIZATION["digits"])
