"""Mask semantics of Ad-Rec's masked attention on hand-built attention logits."""

import pytest
import torch

from hotrec.errors import HotrecError
from hotrec.models.attention import EncoderBlock, MultiHeadAttention, masked_softmax

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
    x = torch.randn(4, 5, 8) * 5 + 3
    y = with_ln(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, 5), atol=1e-5, rtol=0)
    assert without(x).mean(-1).abs().max() > 1e-3


def test_bad_head_options_are_one_line_errors():
    with pytest.raises(HotrecError, match="not divisible by num_heads"):
        MultiHeadAttention(8, 3)
    with pytest.raises(HotrecError, match="one tau per head"):
        MultiHeadAttention(8, 2, thresholds=(0.1,))
