"""The training recipes (``task = "..."`` in a config), one module per family: each builds its network, its
patches, its loss and its validation metrics; :mod:`cycleisp_fast.training.loop` runs any of them.

- :mod:`~cycleisp_fast.training.tasks.base`: :class:`Task`, the clean-image base and the shared helpers;
- :mod:`~cycleisp_fast.training.tasks.denoise`: the denoisers on synthesised pairs;
- :mod:`~cycleisp_fast.training.tasks.isp`: the ISP networks on analytic RAW/sRGB pairs;
- :mod:`~cycleisp_fast.training.tasks.transfer`: AINDNet's transfer learning on real pairs;
- :mod:`~cycleisp_fast.training.tasks.registry`: :func:`make_task`.

==================  ============================================  ==============================================
task                network (checkpoint ``"model"``)               pairs and loss
==================  ============================================  ==============================================
denoise-srgb        ``DenoiseNet(raw=False)`` (cycleisp-srgb)     synthesised sRGB noisy/clean, L1
denoise-raw         ``DenoiseNet(raw=True)`` (cycleisp-raw)       synthesised packed RAW + variance map, L1
aindnet-synthetic   ``AINDNet`` (aindnet)                         synthesised sRGB, L1 + 0.05 x noise-map loss
aindnet-transfer    ``AINDNet`` (aindnet), from a checkpoint      real pairs (``open_pairs``), L1; TF or RT
rgb2raw             ``Rgb2Raw`` (cycleisp-rgb2raw)                sRGB -> packed RAW (analytic), L1 + log L1
raw2rgb             ``CCM`` + ``Raw2Rgb`` (cycleisp-raw2rgb)      packed RAW + sRGB guide -> sRGB, L1
cycleisp-joint      all three (cycleisp-isp)                      beta L_rgb2raw + (1 - beta) L_raw2rgb
==================  ============================================  ==============================================

Synthetic pairs are made on the training device from clean patches
(:class:`~cycleisp_fast.pipelines.synthesis.CleanPatches`), keyed by ``(seed, offset)`` with
``offset = step * world_size + rank``. The ISP tasks pair each clean sRGB patch with the packed RAW of Brooks et
al.'s analytic inverse ISP under a random camera: a stand-in for the real MIT-Adobe FiveK RAW/sRGB pairs the paper
trains on, so that the recipes run without data. When no image folder is given, the embedded sample photographs
serve. Validation uses a fixed set of pairs: seeded crops (no flips) of ``val.images`` or, when it is ``""``, of
the training images, with noise drawn under another seed than training's.
"""

from __future__ import annotations

from cycleisp_fast.training.tasks.base import ISP_FILE_NAMES, Task, load_initial_weights, mean_psnr
from cycleisp_fast.training.tasks.registry import TASK_CLASSES, make_task
from cycleisp_fast.training.tasks.transfer import PairPatches

__all__ = ["ISP_FILE_NAMES", "Task", "load_initial_weights", "mean_psnr", "TASK_CLASSES", "make_task", "PairPatches"]
