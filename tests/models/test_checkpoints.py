"""Loading checkpoints written in the official formats (bare, ``{"state_dict": ...}``, ``module.`` prefix, every
PReLU alias stored), the optional keys (Raw2Rgb's unused conv1x1, CCM's blur), lossless round trips, and broken
checkpoints that must fail with the offending keys named and nothing loaded."""

import pytest
import torch

from cycleisp_fast.models import CCM, DenoiseNet, Raw2Rgb, gaussian_kernel, load_official


def official_checkpoint(model, wrap: bool, prefix: str) -> dict:
    """What the official scripts save: every key (aliases included), cloned tensors, optionally wrapped."""
    state = {prefix + k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "epoch": 3} if wrap else state


def randomized(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


@pytest.mark.parametrize("wrap, prefix", [(False, ""), (True, ""), (True, "module.")])
def test_official_formats_load_key_for_key(tmp_path, wrap, prefix):
    source = randomized(DenoiseNet(raw=False))
    path = tmp_path / "denoiser.pth"
    torch.save(official_checkpoint(source, wrap, prefix), path)
    loaded = load_official(DenoiseNet(raw=False), path)
    for (key, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), key
    # a round trip through state_dict() is lossless
    again = load_official(DenoiseNet(raw=False), loaded.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), again.state_dict().values()))


def test_optional_keys():
    source = randomized(Raw2Rgb())
    state = official_checkpoint(source, False, "")
    del state["conv1x1.0.weight"], state["conv1x1.0.bias"]
    loaded = load_official(Raw2Rgb(), state)
    assert torch.equal(loaded.head[0].weight, source.head[0].weight)
    ccm_state = official_checkpoint(randomized(CCM()), False, "")
    del ccm_state["blur.weight"]
    assert torch.equal(load_official(CCM(), ccm_state).blur.weight, gaussian_kernel(21, 12.0, 3))


def test_broken_checkpoints_name_the_keys_and_load_nothing():
    model = DenoiseNet(raw=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = official_checkpoint(randomized(DenoiseNet(raw=True)), False, "")
    missing = dict(good)
    del missing["tail.0.bias"]
    extra = dict(good, **{"tail.1.weight": torch.zeros(3)})
    misshaped = dict(good, **{"head.0.weight": torch.zeros(64, 3, 3, 3)})
    aliases = dict(good, **{"body.5.weight": good["body.5.weight"] + 1})
    cases = [
        (missing, r"missing keys: tail\.0\.bias"),
        (extra, r"unexpected keys: tail\.1\.weight"),
        (misshaped, r"wrong shapes: head\.0\.weight \(64, 3, 3, 3\) \(expected \(64, 8, 3, 3\)\)"),
        (
            aliases,
            r"stored under 33 names but with different values: these differ from body\.0\.body\.0\.body\.1\.weight: "
            r"body\.5\.weight",
        ),
        (official_checkpoint(randomized(DenoiseNet(raw=False)), True, ""), r"does not fit DenoiseNet: wrong shapes"),
    ]
    for state, message in cases:
        with pytest.raises(ValueError, match=message):
            load_official(model, state)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_unreadable_files(tmp_path):
    truncated = tmp_path / "truncated.pth"
    torch.save(DenoiseNet(raw=False).state_dict(), tmp_path / "full.pth")
    truncated.write_bytes((tmp_path / "full.pth").read_bytes()[:1000])
    with pytest.raises(ValueError, match="could not be read as a torch checkpoint"):
        load_official(DenoiseNet(raw=False), truncated)
    with pytest.raises(FileNotFoundError):
        load_official(DenoiseNet(raw=False), tmp_path / "absent.pth")
    with pytest.raises(TypeError, match="checkpoint must be a path or a state dict"):
        load_official(DenoiseNet(raw=False), [1, 2])
