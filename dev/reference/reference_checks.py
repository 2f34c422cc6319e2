"""Checks of the reference: of a written reference state (--check), and of the model itself
(--self-test: Philox known answer, file round trips, causality, finite-difference gradients)."""

import math
import os
import tempfile

import numpy as np
import torch

import philox
from reference_files import _crc32c_register, crc32c, read_bundle, read_checkpoint, write_bundle, write_checkpoint
from reference_model import (FLAG_LEARNED_POS_EMB, FLAG_POST_NORM, FLAG_ROTARY_INTERLEAVED,
                             FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX, VOCAB_SIZE, Dropout, InputError, ModelConfig,
                             apply_rotary, cross_entropy_loss, forward, init_parameters, parameter_shapes,
                             rotary_tables)

# ---------------------------------------------------------------------------------------------
# Checks of a written reference state (--check)


def check_reference_state(directory):
    """Raises AssertionError/InputError unless DIR/model.bin and DIR/ref.bin agree with each other
    and every value is finite and plausible. Returns a one-line summary."""
    cfg, params = read_checkpoint(os.path.join(directory, "model.bin"))
    bundle = read_bundle(os.path.join(directory, "ref.bin"))
    B, T, L, C, NH, Vp, flags, rotary_dim, _, _, steps = (int(x) for x in bundle["config"])
    assert (L, C, NH, Vp, flags, rotary_dim) == (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.padded_vocab_size,
                                                 cfg.flags, cfg.rotary_dim), "config disagrees with model.bin"
    expected = {"config": (11,), "optimizer": (6,), "tokens": (B, T + 1), "logits": (B, T, VOCAB_SIZE), "loss": (1,),
                "losses": (steps,), "grad_norm": (steps,)}
    expected.update({f"grad.{name}": shape for name, shape in parameter_shapes(cfg)})
    assert set(bundle) == set(expected), f"tensors {sorted(set(bundle) ^ set(expected))} missing or unexpected"
    for name, shape in expected.items():
        assert bundle[name].shape == shape, f"{name}: shape {bundle[name].shape}, expected {shape}"
        assert np.isfinite(bundle[name]).all(), f"{name} has non-finite values"
    tokens = bundle["tokens"]
    assert tokens.min() >= 0 and tokens.max() < VOCAB_SIZE, "token ids outside the vocabulary"
    # The loss recomputed from the stored float32 logits: rounding moves each logit by at most
    # 2^-24 * max|logit|, so each token's log-sum-exp minus target logit by at most twice that;
    # the tolerance doubles this bound again for the float64 arithmetic.
    logits = bundle["logits"].astype(np.float64)
    peak = logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits - peak).sum(axis=-1)) + peak[..., 0]
    target_logit = np.take_along_axis(logits, tokens[:, 1:, None].astype(np.int64), axis=-1)[..., 0]
    recomputed = float((log_z - target_logit).mean())
    tolerance = 4 * 2.0**-24 * np.abs(logits).max() + 1e-12
    assert abs(recomputed - bundle["loss"][0]) <= tolerance, f"loss {bundle['loss'][0]} but logits give {recomputed}"
    assert bundle["losses"][0] == bundle["loss"][0], "losses[0] is not the first forward's loss"
    assert (bundle["grad_norm"] > 0).all(), "a gradient norm is zero"
    # Rows no token uses get exactly zero gradient: padded wte rows, and wpe beyond position T.
    assert not bundle["grad.wte"][VOCAB_SIZE:].any(), "padded wte rows have a gradient"
    if cfg.learned_pos_emb:
        assert not bundle["grad.wpe"][T:].any(), "wpe rows beyond the sequence have a gradient"
    assert all(np.isfinite(v).all() for v in params.values()), "model.bin has non-finite weights"
    return (f"{directory}: B={B} T={T} L={L} C={C} NH={NH} Vp={Vp} flags=0x{flags:x} rotary_dim={rotary_dim}; "
            f"loss {bundle['loss'][0]:.6f}, losses {bundle['losses'][0]:.4f} -> {bundle['losses'][-1]:.4f}")


# ---------------------------------------------------------------------------------------------
# Self-test: is the reference itself right?


def _gradient_check(cfg, dropout_p, rng, log):
    """Central finite differences in float64 against autograd, on randomized weights (so every
    parameter has a sizeable gradient), for the largest-gradient entry and two random entries of
    every tensor, plus one random direction through all parameters at once."""
    B, T = 2, cfg.max_seq_len
    weights = init_parameters(cfg, seed=7)
    params = {name: torch.tensor(value.astype(np.float64) + rng.normal(0.0, 0.1, value.shape), requires_grad=True)
              for name, value in weights.items()}
    names = list(params)
    tokens = torch.tensor(rng.integers(0, VOCAB_SIZE, size=(B, T + 1)))
    dropout = Dropout(dropout_p, seed=1234, step=3, n_layer=cfg.n_layer)

    def loss_at():
        return cross_entropy_loss(forward(params, cfg, tokens[:, :-1], dropout), tokens[:, 1:])

    grads = dict(zip(names, torch.autograd.grad(loss_at(), [params[n] for n in names])))
    # Step 1e-5: the truncation error (h^2/6)|f'''| stays below ~1e-10 for these weights, and the
    # rounding error of a float64 loss near 11 (a few ulp, ~1e-14) divided by 2h is ~1e-9. The
    # tolerance 1e-8 + 1e-6*|g| is 10x that budget (errors seen: <= 3e-10) yet far below any
    # real bug, which shows up as O(|g|).
    h = 1e-5
    worst = 0.0
    with torch.no_grad():
        def central_difference(perturb):
            perturb(+h)
            plus = float(loss_at())
            perturb(-2 * h)
            minus = float(loss_at())
            perturb(+h)
            return (plus - minus) / (2 * h)

        def check(label, numeric, analytic):
            nonlocal worst
            error = abs(numeric - analytic)
            worst = max(worst, error / (1e-8 + 1e-6 * abs(analytic)))
            if error > 1e-8 + 1e-6 * abs(analytic):
                raise AssertionError(f"gradient check failed at {label}: finite difference {numeric:.10e}, "
                                     f"autograd {analytic:.10e}")

        for name in names:
            flat = params[name].view(-1)
            entries = [int(grads[name].abs().argmax())] + list(rng.integers(0, flat.numel(), size=2))
            for index in entries:
                def perturb(delta, flat=flat, index=index):
                    flat[index] += delta
                check(f"{name}[{index}]", central_difference(perturb), float(grads[name].view(-1)[index]))
        direction = {name: torch.tensor(rng.normal(size=params[name].shape)) for name in names}
        norm = math.sqrt(sum(float(d.square().sum()) for d in direction.values()))

        def perturb_all(delta):
            for name in names:
                params[name].add_(direction[name], alpha=delta / norm)
        check("a random direction", central_difference(perturb_all),
              sum(float((grads[name] * direction[name]).sum()) for name in names) / norm)
    log(f"  gradient check ok: {cfg}, dropout {dropout_p} (worst error {worst:.3f} of its tolerance)")


def _causality_check(cfg, rng, log):
    """Changing the token at position t must not change any logit before t."""
    weights = {name: torch.tensor(value, dtype=torch.float64) for name, value in init_parameters(cfg, 3).items()}
    tokens = torch.tensor(rng.integers(0, VOCAB_SIZE, size=(1, cfg.max_seq_len)))
    dropout = Dropout(0.1, seed=5, step=1, n_layer=cfg.n_layer)
    before = forward(weights, cfg, tokens, dropout)
    t = cfg.max_seq_len // 2
    tokens[0, t] = (tokens[0, t] + 1) % VOCAB_SIZE
    after = forward(weights, cfg, tokens, dropout)
    assert torch.equal(before[:, :t], after[:, :t]), "a logit depends on a later token"
    assert not torch.equal(before[:, t], after[:, t]), "the changed token had no effect"
    log("  causality ok")


def _rotary_check(rng, log):
    """Rotary's defining property: with the same q and k vector at every position, the score
    between positions t and s depends only on t - s, and rotation preserves norms."""
    T, HD = 8, 16
    for interleaved in (False, True):
        cfg = ModelConfig(n_layer=1, n_embd=HD, n_head=1, max_seq_len=T, padded_vocab_size=VOCAB_SIZE,
                          flags=FLAG_ROTARY_INTERLEAVED if interleaved else 0, rotary_dim=8)
        cos, sin = rotary_tables(cfg, T, torch.device("cpu"), torch.float64)
        q = apply_rotary(torch.tensor(rng.normal(size=HD)).expand(1, 1, T, HD), cos, sin, 8, interleaved)
        k = apply_rotary(torch.tensor(rng.normal(size=HD)).expand(1, 1, T, HD), cos, sin, 8, interleaved)
        scores = (q @ k.transpose(-2, -1))[0, 0]
        for shift in range(-T + 1, T):
            diagonal = torch.diagonal(scores, shift)
            assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), rtol=0, atol=1e-12), \
                f"rotary (interleaved={interleaved}) scores depend on absolute position"
        assert torch.allclose(q.norm(dim=-1), q[..., 0, :].norm(), rtol=0, atol=1e-12), "rotary changes norms"
        assert torch.equal(q[..., 8:], q[..., 0:1, 8:].expand(1, 1, T, HD - 8)), "rotary touches dims past rotary_dim"
    log("  rotary relative-position property ok (both pairings)")


def _checksum_checks(path, cfg, weights, rng):
    """CRC-32C's known answers (RFC 3720), the chunked computation against the bytewise one, and
    a version-2 model file's checksums: damage is an error naming the part; a version-1 file
    (no checksums) is still read."""
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA and crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    for size in (0, 255, 4096, 300007):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32c(data) == _crc32c_register(0xFFFFFFFF, data) ^ 0xFFFFFFFF, size
    with open(path, "rb") as f:
        blob = f.read()
    copy = path + ".edited"
    for offset, part in ((4 * 12, "header's 1024 bytes"), (4 * 13, "header's 1024 bytes"), (len(blob) - 3, "weights")):
        damaged = bytearray(blob)
        damaged[offset] ^= 0x10
        with open(copy, "wb") as f:
            f.write(damaged)
        try:
            read_checkpoint(copy)
        except InputError as error:
            assert f"{copy}: the {part} fail their checksum" in str(error), str(error)
        else:
            raise AssertionError(f"a flipped bit at byte {offset} went unnoticed")
    version_1 = bytearray(blob)
    version_1[4:8] = (1).to_bytes(4, "little")
    version_1[4 * 13:4 * 15] = bytes(8)  # version 1 had zeros where the checksums are
    with open(copy, "wb") as f:
        f.write(version_1)
    cfg_read, weights_read = read_checkpoint(copy)
    assert cfg_read == cfg and all(np.array_equal(weights[n], weights_read[n]) for n in weights)


def self_test(log=print):
    philox.check_known_answer()
    keep = philox.keep_mask(0.1, 1111, 7, (1 << 20,))
    sigma = math.sqrt(0.1 * 0.9 / keep.size)
    assert abs(keep.mean() - 0.9) < 5 * sigma, f"dropout keeps {keep.mean():.5f}, expected 0.9 +- {5 * sigma:.5f}"
    rate = philox.attention_threshold(0.1) / 65536
    keep = philox.attention_keep_mask(0.1, 1111, 7, (2, 4, 100, 100))
    sigma = math.sqrt(rate * (1 - rate) / keep.size)
    assert abs(keep.mean() - (1 - rate)) < 5 * sigma, \
        f"attention dropout keeps {keep.mean():.5f}, expected {1 - rate:.5f} +- {5 * sigma:.5f}"
    offsets = {philox.dropout_offset(step, micro, 2, 3, rank, 4, site)
               for step in (1, 2) for micro in (0, 1) for rank in (0, 1, 2) for site in range(13)}
    assert len(offsets) == 2 * 2 * 3 * 13, "two dropout sites share an offset"
    log("  philox known answer, keep rates and distinct offsets ok")

    rng = np.random.default_rng(2026)
    micro = dict(n_layer=2, n_embd=16, n_head=2, max_seq_len=8, padded_vocab_size=50264, rotary_base=10000)
    with tempfile.TemporaryDirectory() as directory:
        cfg = ModelConfig(**micro, flags=FLAG_ROTARY_INTERLEAVED | FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX, rotary_dim=4)
        weights = init_parameters(cfg, 1)
        write_checkpoint(os.path.join(directory, "model.bin"), cfg, weights, step=5)
        cfg_read, weights_read = read_checkpoint(os.path.join(directory, "model.bin"))
        assert cfg_read == cfg and all(np.array_equal(weights[n], weights_read[n]) for n in weights)
        _checksum_checks(os.path.join(directory, "model.bin"), cfg, weights, rng)
        tensors = [("a", np.arange(6, dtype=np.float32).reshape(2, 3)), ("scalar", np.array(2.5)),
                   ("é", np.zeros((0, 4), dtype=np.int32))]
        write_bundle(os.path.join(directory, "b.bin"), tensors)
        read = read_bundle(os.path.join(directory, "b.bin"))
        assert list(read) == [n for n, _ in tensors]
        assert all(read[n].dtype == a.dtype and np.array_equal(read[n], a) for n, a in tensors)
    log("  checkpoint (CRC-32C checked, version 1 read) and bundle round trips ok")

    _rotary_check(rng, log)
    _causality_check(ModelConfig(**micro, flags=FLAG_LEARNED_POS_EMB, rotary_dim=4), rng, log)
    modes = [
        (ModelConfig(**micro, flags=FLAG_LEARNED_POS_EMB, rotary_dim=0), 0.0),
        (ModelConfig(**micro, flags=FLAG_LEARNED_POS_EMB | FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX, rotary_dim=0), 0.1),
        (ModelConfig(**micro, flags=FLAG_POST_NORM, rotary_dim=4), 0.1),
        (ModelConfig(**micro, flags=FLAG_ROTARY_INTERLEAVED, rotary_dim=8), 0.2),
    ]
    for cfg, dropout_p in modes:
        _gradient_check(cfg, dropout_p, rng, log)
