"""δ-mem hooks on a tiny random Llama: exact zero-state equality, reads, writes, persistence."""

from __future__ import annotations

import pytest
import torch

from agent.lm.backbone import tiny_llama
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.runtime import MemLM, render
from agent.lm.state import masked_mean

torch.set_num_threads(1)


def _lm(write: str = "ssw", gated: bool = False, random_delta: bool = True) -> MemLM:
    bb = tiny_llama(seed=0)
    mem = DeltaMem(DeltaMemConfig.for_backbone(bb, write=write, gated=gated), seed=1)
    if random_delta:  # make corrections non-zero so that skipping is what keeps equality
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():
            mem.W_dq.copy_(torch.randn(mem.W_dq.shape, generator=g) * 0.2)
            mem.W_do.copy_(torch.randn(mem.W_do.shape, generator=g) * 0.2)
    return MemLM(bb, mem)


def _ids(lm: MemLM) -> torch.Tensor:
    ids, _ = render(lm.bb, [("system", "be brief"), ("user", "Where does Maya live?")], True)
    return torch.tensor([ids])


def test_zero_state_logits_exactly_equal_base():
    lm = _lm()
    x = _ids(lm)
    base = lm.bb.model(input_ids=x).logits
    with lm.mem.reading(lm.mem.zero_states()):
        z = lm.bb.model(input_ids=x).logits
    assert torch.equal(base, z)
    S = lm.mem.write_items(lm.mem.zero_states(), lm.turn_items("I live in Lisbon.")[None])
    with lm.mem.reading(S):
        changed = lm.bb.model(input_ids=x).logits
    assert not torch.equal(base, changed)
    assert torch.equal(base, lm.bb.model(input_ids=x).logits)  # outside the context: base again


def test_untrained_delta_is_exactly_the_base_model_with_any_state():
    lm = _lm(random_delta=False)  # W_Δ = 0 at init
    x = _ids(lm)
    base = lm.bb.model(input_ids=x).logits
    S = lm.mem.write_items(lm.mem.zero_states(), lm.turn_items("My dog is called Mochi.")[None])
    assert bool(S.any())
    with lm.mem.reading(S):
        assert torch.equal(lm.bb.model(input_ids=x).logits, base)


def test_generation_reads_state_through_kv_cache():
    lm = _lm()
    x = _ids(lm)[0].tolist()
    S = lm.mem.write_items(lm.mem.zero_states(), lm.turn_items("I live in Lisbon.")[None])
    out, timing = lm.generate(x, S, max_new_tokens=6)
    assert 0 < len(out) <= 6 and timing["new_tokens"] == len(out)
    # each cached step must equal a full forward over the prefix with the same state
    with lm.mem.reading(S):
        full = lm.bb.model(input_ids=torch.tensor([x + out[:-1]])).logits[0, -1]
    assert int(torch.argmax(full)) == out[-1]


@pytest.mark.parametrize("seed", [0, 3])
def test_fused_read_equals_unfused(seed):
    bb = tiny_llama(seed=seed)
    mem = DeltaMem(DeltaMemConfig.for_backbone(bb), seed=seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        mem.W_dq.copy_(torch.randn(mem.W_dq.shape, generator=g) * 0.2)
        mem.W_do.copy_(torch.randn(mem.W_do.shape, generator=g) * 0.2)
        mem.scale.copy_(torch.rand(mem.scale.shape, generator=g) + 0.5)
    lm = MemLM(bb, mem)
    S = torch.randn(mem.zero_states().shape, generator=g) * 0.5
    S[:, 1] = 0.0  # one zero layer: skipped by both paths
    x = _ids(lm)
    with torch.no_grad():
        base = bb.model(input_ids=x).logits
        with mem.reading(S, fused=False):
            unfused = bb.model(input_ids=x).logits
        with mem.reading(S):  # under no_grad: fused by default
            assert mem._fused is not None and mem._fused.mq[1] is None
            fused = bb.model(input_ids=x).logits
        # one state per row (batched fused read) against the same rows unfused
        S2 = torch.cat([S, -S])
        x2 = x.expand(2, -1)
        with mem.reading(S2, fused=False):
            unfused2 = bb.model(input_ids=x2).logits
        with mem.reading(S2, fused=True):
            fused2 = bb.model(input_ids=x2).logits
    assert not torch.equal(unfused, base)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused2, unfused2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused2[:1], fused, rtol=1e-5, atol=1e-5)
    ids = x[0].tolist()
    out_f, _ = lm.generate(ids, S, max_new_tokens=8)
    out_u, _ = lm.generate(ids, S, max_new_tokens=8, fused=False)
    assert out_f == out_u and len(out_f) > 0
    assert torch.equal(bb.model(input_ids=x).logits, base)  # outside the context: base again


def test_fused_zero_state_and_zero_delta_are_exactly_base():
    lm = _lm()
    x = _ids(lm)
    with torch.no_grad():
        base = lm.bb.model(input_ids=x).logits
        with lm.mem.reading(lm.mem.zero_states(), fused=True):
            assert all(m is None for m in lm.mem._fused.mq + lm.mem._fused.mo)
            assert torch.equal(lm.bb.model(input_ids=x).logits, base)
        lm0 = _lm(random_delta=False)
        S = torch.randn(lm0.mem.zero_states().shape)
        with lm0.mem.reading(S, fused=True):
            assert torch.equal(lm0.bb.model(input_ids=x).logits, base)
    assert lm.generate(x[0].tolist(), lm.mem.zero_states(), 6)[0] == lm.generate(x[0].tolist(), None, 6)[0]


def test_reading_with_grad_is_unfused_and_differentiable():
    lm = _lm()
    x = _ids(lm)
    S = torch.randn(lm.mem.zero_states().shape, requires_grad=True)
    with lm.mem.reading(S):
        assert lm.mem._fused is None
        loss = lm.bb.model(input_ids=x).logits.square().mean()
    loss.backward()
    assert S.grad is not None and bool(S.grad.any())
    assert lm.mem.W_dq.grad is not None and bool(lm.mem.W_dq.grad.any())
    assert lm.mem.W_mq.grad is not None and bool(lm.mem.W_mq.grad.any())


def test_ssw_item_is_mean_of_content_tokens_only():
    lm = _lm(write="ssw")
    ids, seg = render(lm.bb, [("user", "I work as a pilot.")])
    with torch.no_grad(), lm.mem.capturing() as xs:
        lm.bb.model(input_ids=torch.tensor([ids]))
    X = torch.stack(xs, dim=2)[0]  # (T, L, d)
    content = torch.tensor(seg) >= 0
    assert content.sum() == len(lm.bb.encode("I work as a pilot.")) and not content.all()
    item = lm.turn_items("I work as a pilot.")  # (1, L, d)
    torch.testing.assert_close(item[0], X[content].mean(0), rtol=1e-6, atol=1e-6)
    # garbage at template positions changes nothing: those tokens are never written
    Xg = X.clone()
    Xg[~content] = 1e6
    L, d = X.shape[1:]
    means, _ = masked_mean(Xg.reshape(1, -1, L * d), torch.tensor([seg]), 1)
    torch.testing.assert_close(means.reshape(1, L, d), item, rtol=1e-6, atol=1e-6)


def test_system_tokens_never_written():
    lm = _lm()
    ids, seg = render(lm.bb, [("system", "You are helpful."), ("user", "hi"), ("assistant", "hello")])
    toks = [i for i, s in zip(ids, seg, strict=True) if s >= 0]
    assert toks == lm.bb.encode("hi") + lm.bb.encode("hello")
    assert {s for s in seg if s >= 0} == {1, 2}


def test_tsw_items_one_per_content_token_and_readwrite_hook_agrees():
    lm = _lm(write="tsw", random_delta=False)
    text = "My birthday is on 3 May."
    items = lm.turn_items(text)
    assert items.shape[0] == len(lm.bb.encode(text))
    ref = lm.mem.write_items(lm.mem.zero_states(), items[None], kernel="naive")
    ids, seg = render(lm.bb, [("user", text)])
    with torch.no_grad(), lm.mem.read_writing(lm.mem.zero_states(), torch.tensor([seg])) as new:
        lm.bb.model(input_ids=torch.tensor([ids]))
    torch.testing.assert_close(torch.stack(new, dim=1), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gated", [False, True])
def test_write_items_chunk_equals_naive_and_padding_is_noop(gated):
    lm = _lm(gated=gated)
    a = torch.cat([lm.turn_items(t) for t in ["I live in Oslo.", "ok", "My dog is Rex."]])
    X = torch.zeros(2, 5, *a.shape[1:])
    X[0, :3], X[1, :2] = a, a[:2]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    S0 = torch.randn(2, *lm.mem.zero_states().shape[1:], generator=torch.Generator().manual_seed(0))
    naive = lm.mem.write_items(S0, X, mask, kernel="naive")
    chunk = lm.mem.write_items(S0, X, mask, kernel="chunk")
    torch.testing.assert_close(chunk, naive, rtol=1e-5, atol=1e-5)
    alone = lm.mem.write_items(S0[1:], a[None, :2], kernel="naive")
    torch.testing.assert_close(naive[1:], alone, rtol=1e-6, atol=1e-6)  # padding items: no-ops


def test_save_load_roundtrip(tmp_path):
    lm = _lm()
    path = str(tmp_path / "a.safetensors")
    lm.mem.save(path, {"seed": 1}, dtype=torch.float32)
    mem, card = DeltaMem.load(path)
    assert card == {"seed": 1} and mem.cfg == lm.mem.cfg
    for (k, v), (k2, v2) in zip(lm.mem.state_dict().items(), mem.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_parameter_count_on_smollm2_shape():
    mem = DeltaMem(DeltaMemConfig(n_layers=30, d_model=576, d_q=576))
    assert mem.n_params() == 30 * (4 * 8 * 576 + 8 + 2 * 576 * 8 + 1) == 829_710


def test_bad_config_and_mismatched_model_rejected():
    with pytest.raises(ValueError):
        DeltaMemConfig(n_layers=2, d_model=64, d_q=64, write="sometimes")
    mem = DeltaMem(DeltaMemConfig(n_layers=3, d_model=64, d_q=64))
    with pytest.raises(ValueError):
        mem.attach(tiny_llama(0).model)
    with pytest.raises(RuntimeError):
        with mem.reading(mem.zero_states()):
            pass


def test_speed_figures_on_tiny_model_and_untrained_delta_restored():
    from agent.lm.speed import speed

    lm = _lm(random_delta=False)
    out = speed(lm, prompt_tokens=16, new_tokens=3, repeats=2)
    for k in ("prefill_base", "prefill_delta_read", "prefill_delta_tsw", "decode_base",
              "decode_delta_read", "decode_delta_read_unfused", "decode_overhead_read"):
        assert out[k] == out[k]  # finite numbers, not NaN
    assert out["decode_overhead_read_lo"] <= out["decode_overhead_read_hi"]
    assert not lm.mem.W_dq.any() and not lm.mem.W_do.any()  # random W_Δ only during the run
