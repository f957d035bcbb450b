"""Mask semantics of Ad-Rec's masked attention on hand-built attention logits."""

import math

import pytest
import torch

from hotrec.errors import HotrecError
from hotrec.models.attention import EncoderBlock, MultiHeadAttention, masked_softmax
from hotrec.models.interactions import make_interaction

# One row of logits [0, 0, -10]: P ~ [0.49998, 0.49998, 4.5e-5].
LOW_LAST = [0.0, 0.0, -10.0]
LOW_FIRST = [-10.0, 0.0, 0.0]
HALF_HALF_ZERO = torch.tensor([0.5, 0.5, 0.0])
ZERO_HALF_HALF = torch.tensor([0.0, 0.5, 0.5])


def scores(rows) -> torch.Tensor:
    """Nested lists [B][H][Q][K] -> float tensor."""
    return torch.tensor(rows, dtype=torch.float32)


def test_mask_is_per_sample():
    # Sample 0 has the weak entry in the last column, sample 1 in the first: each row masks
    # its own weak entry (a mask taken from another sample would drop a strong one).
    s = scores([[[LOW_LAST]], [[LOW_FIRST]]])  # [2, 1, 1, 3]
    out = masked_softmax(s, torch.tensor([0.001]))
    torch.testing.assert_close(out[0, 0, 0], HALF_HALF_ZERO)
    torch.testing.assert_close(out[1, 0, 0], ZERO_HALF_HALF)


def test_mask_is_per_head():
    # The same logits in both heads; only head 1's tau (0.001) is above the weak entry.
    s = scores([[[LOW_LAST], [LOW_LAST]]])  # [1, 2, 1, 3]
    out = masked_softmax(s, torch.tensor([1e-5, 1e-3]))
    torch.testing.assert_close(out[0, 0, 0], torch.softmax(s[0, 0, 0], -1))
    assert out[0, 0, 0, 2] > 0
    torch.testing.assert_close(out[0, 1, 0], HALF_HALF_ZERO)


def test_each_head_masks_with_its_own_probabilities():
    # Head 0: logits [0, -3, -10] -> P ~ [0.9526, 0.0474, 4.3e-5], tau 0.001 keeps {0, 1}.
    # Head 1: logits [-10, 0, -3] -> P ~ [4.3e-5, 0.9526, 0.0474], tau 0.1 keeps {1} only.
    # A mask taken from the other head's probabilities (or tau) would keep other columns.
    s = scores([[[[0.0, -3.0, -10.0]], [[-10.0, 0.0, -3.0]]]])  # [1, 2, 1, 3]
    out = masked_softmax(s, torch.tensor([0.001, 0.1]))
    e = math.exp(-3.0)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([1 / (1 + e), e / (1 + e), 0.0]))
    torch.testing.assert_close(out[0, 1, 0], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(out[0, :, 0] > 0, torch.tensor([[True, True, False], [False, True, False]]))


def test_bf16_autocast_takes_the_float32_mask_decision():
    # P of the weak key of [0, -6.90625] is 0.0010005 in float32 (> tau 0.001: kept) but
    # 0.00099945 in bf16, equal to bf16(0.001) (not above it: masked). The logits are exact
    # in bf16, as they are when they come out of q @ k^T under autocast.
    flip = [0.0, -6.90625]
    torch.manual_seed(5)
    rest = (torch.randn(1, 2, 6, 2) * 4).tolist()[0]  # random rows, the same in both heads
    s = torch.tensor([[[flip] + rest[0], [flip] + rest[1]]]).to(torch.bfloat16)  # [1, 2, 7, 2]
    tau = torch.tensor([0.001, 0.005])
    s32 = s.float()
    p32 = torch.softmax(s32, -1)
    keep32 = (p32 > tau.view(1, 2, 1, 1)) | (p32 == p32.amax(-1, keepdim=True))
    pbf = torch.softmax(s, -1)
    keep_bf = (pbf > tau.to(torch.bfloat16).view(1, 2, 1, 1)) | (pbf == pbf.amax(-1, keepdim=True))
    assert not torch.equal(keep_bf, keep32)  # a decision on bf16 probabilities would differ
    assert keep32[0, 0, 0, 1]  # ... here: head 0 keeps the weak key in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = masked_softmax(s, tau)
    assert torch.equal(out != 0, keep32)
    assert torch.equal(masked_softmax(s32, tau) != 0, keep32)


def test_mask_is_per_query_row():
    s = scores([[[LOW_LAST, LOW_FIRST, [0.0, 0.0, 0.0]]]])  # [1, 1, 3, 3]
    out = masked_softmax(s, torch.tensor([0.001]))
    torch.testing.assert_close(out[0, 0, 0], HALF_HALF_ZERO)
    torch.testing.assert_close(out[0, 0, 1], ZERO_HALF_HALF)
    torch.testing.assert_close(out[0, 0, 2], torch.full((3,), 1 / 3))


def test_batch_result_equals_each_sample_alone():
    torch.manual_seed(0)
    s = torch.randn(5, 2, 4, 4) * 4  # [B, H, Q, K]
    tau = torch.tensor([0.02, 0.1])
    batched = masked_softmax(s, tau)
    for b in range(5):
        torch.testing.assert_close(batched[b : b + 1], masked_softmax(s[b : b + 1], tau))
    assert (batched == 0).any()  # something was masked, so the check above means something


def test_no_row_is_fully_masked():
    # tau above every probability: each row keeps its largest entry only.
    s = scores([[[[1.0, 0.5, 0.0], [0.0, 2.0, 0.1]]]])  # [1, 1, 2, 3]
    out = masked_softmax(s, torch.tensor([0.9]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def test_rows_sum_to_one_and_kept_set_is_above_tau():
    torch.manual_seed(1)
    s = torch.randn(3, 2, 5, 5) * 3
    tau = torch.tensor([0.05, 0.15])
    out = masked_softmax(s, tau)
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 2, 5))
    plain = torch.softmax(s, -1)
    kept = plain > tau.view(1, 2, 1, 1)
    kept |= plain == plain.amax(-1, keepdim=True)
    assert torch.equal(out > 0, kept)


def test_tau_zero_equals_plain_attention():
    torch.manual_seed(2)
    s = torch.randn(4, 2, 6, 6)
    torch.testing.assert_close(masked_softmax(s, torch.zeros(2)), torch.softmax(s, -1))
    torch.manual_seed(3)
    masked = MultiHeadAttention(8, 2, thresholds=(0.0, 0.0))
    plain = MultiHeadAttention(8, 2)
    plain.load_state_dict(masked.state_dict())
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(masked(x), plain(x))


def test_masked_entries_get_no_gradient():
    s = scores([[[LOW_LAST]]]).requires_grad_()
    out = masked_softmax(s, torch.tensor([0.001]))
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert s.grad[0, 0, 0, 2] == 0
    assert s.grad[0, 0, 0, :2].abs().sum() > 0


def test_thresholds_change_the_attention_output():
    torch.manual_seed(4)
    masked = MultiHeadAttention(8, 2, thresholds=(0.2, 0.2))
    plain = MultiHeadAttention(8, 2)
    plain.load_state_dict(masked.state_dict())
    x = torch.randn(3, 6, 8) * 3
    assert not torch.allclose(masked(x), plain(x))


def test_layernorm_ablation_has_no_layernorm():
    with_ln = EncoderBlock(8, 2, 16, 0.0, (0.001, 0.005), layernorm=True)
    without = EncoderBlock(8, 2, 16, 0.0, (0.001, 0.005), layernorm=False)
    count = lambda m: sum(isinstance(x, torch.nn.LayerNorm) for x in m.modules())  # noqa: E731
    assert count(with_ln) == 2 and count(without) == 0
    torch.manual_seed(6)
    without.load_state_dict(with_ln.state_dict(), strict=False)  # same attention and FFN
    x = torch.randn(4, 5, 8) * 5 + 3
    y, z = with_ln(x), without(x)
    # With LayerNorm (initial weight 1, bias 0) every token is normalized over D...
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(-1, unbiased=False), torch.ones(4, 5), atol=1e-3, rtol=0)
    # ... without it no token is: the residual keeps the inputs' mean ~3 and std ~5.
    normalized = (z.mean(-1).abs() < 0.05) & ((z.std(-1, unbiased=False) - 1).abs() < 0.05)
    assert not normalized.any()
    assert z.mean() > 1.5 and (z.std(-1, unbiased=False) > 2).all()


def test_masked_transformer_is_deterministic_in_eval_mode():
    torch.manual_seed(7)
    module = make_interaction("masked_transformer", 3, 8, dropout=0.5, ffn_dim=32)
    dense, features = torch.randn(6, 8), torch.randn(6, 3, 8)
    module.train()
    assert not torch.equal(module(dense, features), module(dense, features))  # dropout is on
    module.eval()
    first = module(dense, features)
    torch.testing.assert_close(module(dense, features), first, atol=0, rtol=0)


def test_bad_head_options_are_one_line_errors():
    with pytest.raises(HotrecError, match="not divisible by num_heads"):
        MultiHeadAttention(8, 3)
    with pytest.raises(HotrecError, match="one tau per head"):
        MultiHeadAttention(8, 2, thresholds=(0.1,))
