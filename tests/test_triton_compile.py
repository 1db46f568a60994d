"""Every Triton kernel compiles for real GPUs (sm_80 and sm_90) without one, and spills nothing.

The interpreter (how the kernels run in CI) executes their logic but never compiles them, and it accepts
code that the compiler rejects (e.g. a loop-carried variable whose type changes). So this test compiles
each kernel ahead of time with ``triton.compile`` for both targets, in a fresh interpreter without
``TRITON_INTERPRET``, and reads the cubin's resource usage with the cuobjdump that Triton bundles. A spec
may carry compile options as its launcher passes them (the noise kernel: ``enable_fp_fusion=False``); without
FMA contraction, no float32 ``fma`` may appear in the PTX.
"""

import os
import textwrap

import pytest
from conftest import run_python

pytest.importorskip("triton")

CHECK = textwrap.dedent(
    """
    import os, re, subprocess, sys, tempfile
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from cycleisp_fast.triton_kernels import ain, bayer, camera, dual_attention as da, noise
    from cycleisp_fast.triton_kernels import physical_noise as physical
    from cycleisp_fast.triton_kernels import dual_attention_backward as dab
    from cycleisp_fast.triton_kernels import ain_backward

    def ptr(dtype):
        return "*" + dtype

    def specs():
        for io in ("fp32", "fp16", "bf16"):
            for src, dst, levels in ((1, 2, True), (2, 1, False), (0, 2, False), (1, 0, False)):
                yield bayer.bayer_remap_kernel, dict(
                    src_ptr=ptr(io if src != 1 or not levels else "u16"), dst_ptr=ptr(io), black_ptr="*fp32",
                    white_ptr="*fp32", H="i32", W="i32", red_site="i32"), dict(
                    SRC=src, DST=dst, LEVELS=levels, BLOCK=bayer.BLOCK)
        for io, acc in (("fp32", "fp32"), ("bf16", "fp32"), ("fp64", "fp64")):
            stats = dict(plane_size="i32", chunks="i32")
            modulation = dict(x_ptr=ptr(io), gamma_ptr=ptr(io), beta_ptr=ptr(io))
            grads = dict(grad_ptr=ptr(io), x_ptr=ptr(io), gamma_ptr=ptr(io), gate_ptr=ptr(io), mean_ptr=ptr(acc),
                         rstd_ptr=ptr(acc))
            sizes = dict(CHUNK=ain.CHUNK, BLOCK=ain.BLOCK)
            yield ain._ain_stats_kernel, dict(x_ptr=ptr(io), partial_ptr=ptr(acc), **stats), sizes
            for leaky in (False, True):
                with_partials = dict(sizes, LEAKY=leaky, PARTIAL_BLOCK=ain.PARTIAL_BLOCK)
                yield ain._ain_modulate_kernel, dict(
                    **modulation, out_ptr=ptr(io), partial_ptr=ptr(acc), mean_ptr=ptr(acc), rstd_ptr=ptr(acc),
                    **stats, eps="fp64", slope="fp64"), with_partials
                yield ain_backward._ain_grad_sums_kernel, dict(
                    **grads, grad_gamma_ptr=ptr(io), grad_beta_ptr=ptr(io), partial_ptr=ptr(acc), **stats,
                    slope="fp64"), dict(sizes, LEAKY=leaky, FROM_OUTPUT=leaky)
                yield ain_backward._ain_input_grad_kernel, dict(
                    **grads, partial_ptr=ptr(acc), grad_x_ptr=ptr(io), **stats, slope="fp64"), dict(
                    with_partials, FROM_OUTPUT=leaky)
        # noise: every io dtype under both models, clipping off, on, and one-sided; int64 scalars (the
        # kernel's widest), options as noise_sample launches it
        for io, acc, model, has_min, has_max in (
                ("fp32", "fp32", 0, True, True), ("fp32", "fp32", 1, False, False),
                ("bf16", "fp32", 0, False, False), ("bf16", "fp32", 1, True, True),
                ("fp16", "fp32", 0, True, False), ("fp16", "fp32", 1, False, True),
                ("fp64", "fp64", 0, False, False), ("fp64", "fp64", 1, True, True),
                ("fp32", "fp32", 2, False, False)):  # model 2: the Gaussian model's backward
            yield noise.noise_sample_kernel, dict(
                x_ptr=ptr(io), shot_ptr=ptr(acc), read_ptr=ptr(acc), out_ptr=ptr(io), numel="i64",
                plane_size="i64", seed="i64", offset="i64", clip_min="fp64", clip_max="fp64"), dict(
                MODEL=model, HAS_MIN=has_min, HAS_MAX=has_max, TILE_COUNTERS=noise.TILE_COUNTERS,
                MAX_ROUNDS=noise.MAX_POISSON_ROUNDS), dict(enable_fp_fusion=False)
        # physical noise: ELD's ptrqc (63 - g) and the Gaussian pgrq in every io dtype, packed and planar rows
        for io, acc, components, packed, has_min, has_max in (
                ("fp32", "fp32", 61, True, False, True), ("fp32", "fp32", 27, False, True, True),
                ("bf16", "fp32", 61, True, True, False), ("fp16", "fp32", 27, True, False, False),
                ("fp64", "fp64", 61, False, True, True)):
            yield physical.physical_noise_kernel, dict(
                x_ptr=ptr(io), params_ptr=ptr(acc), bias_ptr=ptr(acc), out_ptr=ptr(io), numel="i64", channels="i64",
                height="i64", width="i64", phase_bits="i64", seed="i64", offset="i64", clip_min="fp64",
                clip_max="fp64"), dict(
                COMPONENTS=components, PACKED_ROWS=packed, HAS_MIN=has_min, HAS_MAX=has_max,
                TILE_COUNTERS=physical.TILE_COUNTERS, MAX_ROUNDS=physical.MAX_POISSON_ROUNDS), dict(
                enable_fp_fusion=False)
        # camera ops: every io dtype
        for io in ("fp32", "fp16", "bf16", "fp64"):
            yield camera.camera_mosaic_kernel, dict(
                linear_ptr=ptr(io), matrix_ptr=ptr(io), gains_ptr=ptr(io), packed_ptr=ptr(io), H="i32", W="i32"), dict(
                BLOCK=camera.BLOCK)
            yield camera.camera_demosaic_kernel, dict(
                packed_ptr=ptr(io), gains_ptr=ptr(io), matrix_ptr=ptr(io), out_ptr=ptr(io), H="i32", W="i32"), dict(
                BLOCK=camera.BLOCK)
        # dual attention: float32 / bfloat16 / float64 features; C = 8, 64, 96 (CP 16, 64, 128) with R = C / 8;
        # tile sizes and options as the launchers pick them
        for io, acc in (("fp32", "fp32"), ("bf16", "fp32"), ("fp64", "fp64")):
            image = dict(H="i32", W="i32", blocks="i32")
            pool = dict(pool_ptr=ptr(acc), sa_ptr=ptr(acc))
            mlp = dict(w1_ptr=ptr(acc), b1_ptr=ptr(acc), w2_ptr=ptr(acc), b2_ptr=ptr(acc))
            yield da._channel_pool_kernel, dict(
                res_ptr=ptr(io), pool_ptr=ptr(acc), argmax_ptr="*i32", partial_ptr=ptr(acc), C="i32",
                plane_size="i32", blocks="i32"), dict(BLOCK_C=da.POOL_BLOCK_C, BLOCK_P=da.BLOCK_P), da.OPTIONS
            yield dab._logit_grad_kernel, dict(
                grad_s_ptr=ptr(acc), **pool, grad_logit_ptr=ptr(acc), grad_sa_ptr=ptr(acc), **image,
                row_blocks="i32"), dict(BLOCK_P=da.BLOCK_P, TAPS=da.TAPS), da.OPTIONS
            for channels in (8, 64, 96):
                padded = da.padded_channels(channels)
                reduced = dict(CP=padded, RP=triton.next_power_of_2(max(1, channels // 8)))
                projection = dict(ROWS=min(padded, da.PROJECTION_ROWS), BLOCK_P=da.PROJECTION_BLOCK_P, KC=da.KC,
                                  TAPS=da.TAPS)
                yield da._channel_attention_kernel, dict(
                    partial_ptr=ptr(acc), **mlp, mean_ptr=ptr(acc), scale_ptr=ptr(acc), C="i32", R="i32",
                    plane_size="i32", blocks="i32"), dict(reduced, PARTIAL_BLOCK=da.PARTIAL_BLOCK), da.OPTIONS
                yield da._projection_kernel, dict(
                    res_ptr=ptr(io), x_ptr=ptr(io), pool_ptr=ptr(acc), scale_ptr=ptr(acc), sa_ptr=ptr(acc),
                    proj_ptr=ptr(acc), bias_ptr=ptr(acc), out_ptr=ptr(io), C="i32", **image), projection, da.OPTIONS
                yield dab._grad_sums_kernel, dict(
                    grad_ptr=ptr(io), res_ptr=ptr(io), **pool, proj_ptr=ptr(acc), grad_s_ptr=ptr(acc),
                    outer_ptr=ptr(acc), grad_bias_ptr=ptr(acc), C="i32", H="i32", W="i32", chunks="i32",
                    row_blocks="i32"), dict(CHUNK=da.GRAD_CHUNK, CP=padded, ROWS=da.grad_rows(padded),
                                            BLOCK_P=da.GRAD_BLOCK_P, KC=da.KC, TAPS=da.TAPS), da.OPTIONS
                yield dab._channel_attention_grad_kernel, dict(
                    outer_ptr=ptr(acc), mean_ptr=ptr(acc), **mlp, proj_ptr=ptr(acc), scale_ptr=ptr(acc),
                    channel_grad_ptr=ptr(acc), grad_wb_ptr=ptr(acc), grad_w1_ptr=ptr(acc), grad_b1_ptr=ptr(acc),
                    grad_w2_ptr=ptr(acc), grad_b2_ptr=ptr(acc), C="i32", R="i32", plane_size="i32",
                    chunks="i32"), dict(reduced, ROWS=da.PARTIAL_BLOCK), da.OPTIONS
                yield dab._input_grad_kernel, dict(
                    grad_ptr=ptr(io), pool_ptr=ptr(acc), argmax_ptr="*i32", grad_logit_ptr=ptr(acc),
                    scale_ptr=ptr(acc), channel_grad_ptr=ptr(acc), sa_ptr=ptr(acc), proj_ptr=ptr(acc),
                    grad_res_ptr=ptr(io), C="i32", **image), projection, da.OPTIONS

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    failures = 0
    for capability in (80, 90):
        target = GPUTarget("cuda", capability, 32)
        for kernel, signature, constexprs, *options in specs():
            options = dict(*options)
            signature = dict(signature, **{name: "constexpr" for name in constexprs})
            label = f"sm_{capability} {kernel.fn.__name__} {signature} {options}"
            try:
                compiled = triton.compile(ASTSource(kernel, signature=signature, constexprs=constexprs), target=target,
                                          options=options)
            except Exception as error:
                failures += 1
                print("FAIL compile", label, type(error).__name__, str(error)[-800:])
                continue
            with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
                cubin.write(compiled.asm["cubin"])
                cubin.flush()
                usage = subprocess.run([cuobjdump, "--dump-resource-usage", cubin.name], capture_output=True,
                                       text=True, check=True).stdout
            local = re.search(r"LOCAL:(\\d+)", usage)
            if options.get("enable_fp_fusion") is False and "fma.rn.f32" in compiled.asm["ptx"]:
                failures += 1
                print("FAIL float32 fma without fp fusion", label)
            elif local is None or int(local.group(1)) != 0:
                failures += 1
                print("FAIL local memory (register spills)", label, usage.strip()[-300:])
            else:
                print("ok", label, re.search(r"REG:\\d+", usage).group(0))
    sys.exit(1 if failures else 0)
    """
)


def test_triton_kernels_compile_for_sm80_and_sm90_without_spills():
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = run_python(CHECK, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result.stdout.count("\nok ") + result.stdout.startswith("ok ") >= 80
    assert result.stdout.count(" noise_sample_kernel ") >= 16
    assert result.stdout.count(" physical_noise_kernel ") >= 10
