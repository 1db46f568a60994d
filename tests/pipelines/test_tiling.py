"""Tiled inference: exact for local functions, one call for small images, padding, scaling, bad arguments."""

import pytest
import torch
import torch.nn.functional as F

from cycleisp_fast.pipelines.tiling import tile_spans, tiled_apply


def local_network(radius: int, in_channels: int = 3, out_channels: int = 3) -> torch.nn.Module:
    """``radius`` zero-padded 3x3 convolutions: each output pixel depends on inputs within ``radius`` pixels."""
    layers = []
    for index in range(radius):
        layers += [
            torch.nn.Conv2d(in_channels if index == 0 else 8, out_channels if index == radius - 1 else 8, 3, padding=1),
            torch.nn.Tanh(),
        ]
    return torch.nn.Sequential(*layers).eval()


class CallCounter:
    def __init__(self, fn):
        self.fn, self.shapes = fn, []

    def __call__(self, x):
        self.shapes.append(tuple(x.shape))
        return self.fn(x)


@pytest.mark.parametrize(
    "height, width, tile, overlap, radius",
    [(37, 50, 16, 4, 3), (45, 29, 20, 3, 3), (64, 64, 24, 5, 5), (33, 70, 12, 2, 1)],
)
def test_tiled_local_function_equals_untiled(height, width, tile, overlap, radius):
    network = local_network(radius)
    x = torch.rand(2, 3, height, width)
    counter = CallCounter(network)
    with torch.no_grad():
        tiled, untiled = tiled_apply(counter, x, tile=tile, overlap=overlap), network(x)
    assert len(counter.shapes) > 1 and all(shape[-2:] == (tile, tile) for shape in counter.shapes)
    torch.testing.assert_close(tiled, untiled, rtol=1e-5, atol=1e-6)


def test_a_receptive_field_wider_than_the_overlap_shows_the_seams():
    network = local_network(4)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        difference = (tiled_apply(network, x, tile=16, overlap=2) - network(x)).abs().max()
    assert difference > 1e-4  # the test above would catch a tiler that ignored its tiles


@pytest.mark.parametrize(
    "extent, tile, overlap",
    [(100, 30, 5), (31, 30, 5), (30, 30, 5), (7, 30, 5), (257, 64, 0), (65, 16, 7), (1000, 512, 32)],
)
def test_tile_spans_partition_the_axis_and_keep_centres(extent, tile, overlap):
    spans = tile_spans(extent, tile, overlap)
    kept = [index for _, _, keep_start, keep_stop in spans for index in range(keep_start, keep_stop)]
    assert kept == list(range(extent))
    for start, stop, keep_start, keep_stop in spans:
        assert 0 <= start <= keep_start < keep_stop <= stop <= extent
        assert stop - start == min(tile, extent)
        assert start == 0 or keep_start - start >= overlap  # far from the tile's inner edges
        assert stop == extent or stop - keep_stop >= overlap


def test_an_image_no_larger_than_the_tile_is_one_call():
    network = local_network(2)
    x = torch.rand(2, 3, 30, 17)
    counter = CallCounter(network)
    with torch.no_grad():
        result = tiled_apply(counter, x, tile=30, overlap=8)
        expected = network(x)
    assert counter.shapes == [(2, 3, 30, 17)]
    assert torch.equal(result, expected)


def test_tiles_are_padded_to_the_multiple_with_replicated_edges():
    network = local_network(2)

    def needs_multiple_of_8(tile):
        assert tile.shape[-2] % 8 == 0 and tile.shape[-1] % 8 == 0, tile.shape
        return network(tile)

    x = torch.rand(1, 3, 21, 13)
    with torch.no_grad():  # one tile, padded to 24x16 at the bottom and right, then cropped back
        result = tiled_apply(needs_multiple_of_8, x, tile=64, overlap=4, multiple=8)
        expected = network(F.pad(x, (0, 3, 0, 3), mode="replicate"))[..., :21, :13]
        torch.testing.assert_close(result, expected)
        large = torch.rand(1, 3, 70, 53)  # tiles of 24 inside the image need no padding: exact again
        torch.testing.assert_close(
            tiled_apply(needs_multiple_of_8, large, tile=24, overlap=4, multiple=8),
            network(large),
            rtol=1e-5,
            atol=1e-6,
        )


def test_scaled_outputs_are_stitched_at_the_output_resolution():
    network = local_network(2, in_channels=4, out_channels=3)

    def upsampling(tile):  # packed (4, h, w) -> (3, 2h, 2w), still local
        return F.interpolate(network(tile), scale_factor=2, mode="nearest")

    x = torch.rand(2, 4, 26, 35)
    with torch.no_grad():
        result = tiled_apply(upsampling, x, tile=12, overlap=3, scale=2)
        torch.testing.assert_close(result, upsampling(x), rtol=1e-5, atol=1e-6)
    assert result.shape == (2, 3, 52, 70)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tile=8, overlap=4), "2 \\* overlap"),
        (dict(tile=0), "tile"),
        (dict(overlap=-1), "overlap"),
        (dict(multiple=0), "multiple"),
        (dict(scale=1.5), "scale"),
        (dict(tile=True), "tile"),
    ],
)
def test_bad_arguments_are_reported(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiled_apply(lambda t: t, torch.rand(1, 3, 20, 20), **kwargs)


def test_bad_inputs_and_outputs_are_reported():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        tiled_apply(lambda t: t, torch.rand(3, 20, 20))
    with pytest.raises(TypeError, match="callable"):
        tiled_apply(None, torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match="returned"):
        tiled_apply(lambda t: t[..., 1:, :], torch.rand(1, 3, 20, 20), tile=8, overlap=1)
    with pytest.raises(ValueError, match="2h"):
        tiled_apply(lambda t: t, torch.rand(1, 3, 20, 20), scale=2)
