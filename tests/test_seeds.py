"""The seed table: one salt per purpose, fixed forever (a changed salt silently changes every dataset and training
run made with it), and keyed generators that depend on exactly (seed, offset, stream)."""

import torch

from cycleisp_fast.seeds import VALIDATION_SEED_SALT, Stream, keyed_generator


def test_the_salts_are_the_published_ones_and_distinct():
    # the values every earlier release used: the README's reproducibility promise rests on them
    assert {stream.name: stream.value for stream in Stream} == {
        "LEVELS": 0x6E6F6973654C766C,
        "CAMERA": 0x63616D6572615F70,
        "PATCH": 0x7061746368657321,
        "PAIR": 0x7061697263726F70,
        "RAW_SRGB": 0x7261777372676221,
        "SHARD_ORDER": 0x7368617264732121,
        "SHARD_PATCH": 0x7368617264637574,
        "PHYSICAL": 0x706879736E6F6973,
    }
    assert VALIDATION_SEED_SALT == 0x76616C69646174
    assert len({*Stream, VALIDATION_SEED_SALT}) == len(Stream) + 1


def test_keyed_generators_depend_on_seed_offset_and_stream_only():
    def draws(seed, offset, stream):
        return torch.rand(4, generator=keyed_generator(seed, offset, stream), dtype=torch.float64)

    assert torch.equal(draws(3, 5, Stream.CAMERA), draws(3, 5, Stream.CAMERA))
    variants = [
        draws(3, 5, Stream.CAMERA),
        draws(4, 5, Stream.CAMERA),
        draws(3, 6, Stream.CAMERA),
        *(draws(3, 5, stream) for stream in Stream if stream != Stream.CAMERA),
    ]
    assert len({tuple(v.tolist()) for v in variants}) == len(variants)
    assert keyed_generator(2**63 - 1, 2**40, Stream.PATCH).device.type == "cpu"
