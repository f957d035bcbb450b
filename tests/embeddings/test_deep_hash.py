import pytest
import torch

from hotrec.embeddings.deep_hash import DeepHashEmbedding
from hotrec.errors import HotrecError


def small_dhe(**options) -> DeepHashEmbedding:
    args = {"num_hashes": 16, "buckets": 1000, "prime": 1009, "hidden": (12,), "seed": 3}
    return DeepHashEmbedding(3, 4, **{**args, **options})


def test_hash_codes_are_seeded_int64_and_follow_the_formula():
    ids = torch.tensor([[0, 5, 2**31 - 1], [1008, 1009, 123456]])  # ids at and above p
    a, b = small_dhe(), small_dhe()
    codes = a.hash_codes(ids)  # [B, F, k]
    assert codes.dtype == torch.int64 and codes.shape == (2, 3, 16)
    assert torch.equal(codes, b.hash_codes(ids))
    assert not torch.equal(codes, small_dhe(seed=4).hash_codes(ids))
    assert int(codes.min()) >= 0 and int(codes.max()) < 1000
    for row in range(2):
        for f in range(3):
            x = int(ids[row, f])
            for i in range(16):
                ai, bi = int(a.hash_a[f, i]), int(a.hash_b[f, i])
                assert int(codes[row, f, i]) == ((ai * x + bi) % 1009) % 1000
    assert 1 <= int(a.hash_a.min()) and int(a.hash_a.max()) < 1009
    assert 0 <= int(a.hash_b.min()) and int(a.hash_b.max()) < 1009


def test_default_hash_parameters_do_not_overflow_int64():
    dhe = DeepHashEmbedding(1, 2, num_hashes=8, hidden=(4,))
    x = 2**31 - 1
    codes = dhe.hash_codes(torch.tensor([[x]]))[0, 0]
    expect = [
        ((int(a) * x + int(b)) % 1_000_003) % 1_000_000
        for a, b in zip(dhe.hash_a[0], dhe.hash_b[0], strict=True)
    ]
    assert codes.tolist() == expect


def test_uniform_codes_span_minus_one_to_one():
    dhe = small_dhe()
    assert dhe.scale(torch.tensor([0, 999])).tolist() == [-1.0, 1.0]
    codes = dhe.codes(torch.randint(0, 10**6, (200, 3)))
    assert codes.dtype == torch.float32 and codes.shape == (200, 3, 16)
    assert float(codes.min()) >= -1 and float(codes.max()) <= 1
    assert float(codes.min()) < -0.9 and float(codes.max()) > 0.9


def test_gaussian_codes_are_standard_normal_for_odd_k():
    dhe = small_dhe(distribution="gaussian", num_hashes=15, buckets=10**6, prime=1_000_003)
    codes = dhe.codes(torch.arange(4000).view(-1, 1).expand(-1, 3))
    assert codes.shape == (4000, 3, 15) and torch.isfinite(codes).all()
    assert abs(float(codes.mean())) < 0.05
    assert abs(float(codes.std()) - 1) < 0.05


@pytest.mark.parametrize(
    "options", [{}, {"activation": "mish", "batchnorm": True, "hidden": (12, 6)}]
)
def test_output_shape_and_decoder_gradients(options):
    dhe = small_dhe(**options)
    out = dhe(torch.randint(0, 100, (10, 3)))
    assert out.shape == (10, 3, 4)
    out.pow(2).sum().backward()
    params = list(dhe.parameters())
    hidden = len(options.get("hidden", (12,)))
    norms = hidden if options.get("batchnorm") else 0
    assert len(params) == 2 * (hidden + 1) + 2 * norms  # weights, biases; BatchNorm affine
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert dhe.num_features == 3


def test_batched_decoder_equals_one_linear_stack_per_feature():
    dhe = small_dhe(hidden=(12, 6))
    ids = torch.randint(0, 100, (7, 3))
    out = dhe(ids)
    codes = dhe.codes(ids)  # [B, F, k]
    w, b = dhe.decoder.weights, dhe.decoder.biases
    for f in range(3):
        h = torch.relu(codes[:, f] @ w[0][f] + b[0][f])
        h = torch.relu(h @ w[1][f] + b[1][f])
        torch.testing.assert_close(out[:, f], h @ w[2][f] + b[2][f])


def test_state_dict_round_trip_gives_identical_outputs():
    a = small_dhe(batchnorm=True)
    a(torch.randint(0, 100, (16, 3)))  # moves the BatchNorm statistics
    b = small_dhe(batchnorm=True, seed=99)
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, 100, (9, 3))
    a.eval()
    b.eval()
    assert torch.equal(a(ids), b(ids))


def test_cost_counts():
    dhe = small_dhe(hidden=(12,))
    weights = 3 * (16 * 12 + 12 + 12 * 4 + 4)
    assert dhe.param_bytes() == 4 * weights + 8 * 2 * 3 * 16  # + int64 hash coefficients
    assert dhe.flops_per_sample() == 2 * 3 * (16 * 12 + 12 * 4)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"buckets": 1}, "buckets"),
        ({"prime": 999}, "prime"),
        ({"prime": 2**31 + 11}, "prime"),
        ({"distribution": "cauchy"}, "distribution"),
        ({"activation": "tanh"}, "activation"),
    ],
)
def test_bad_options_are_hotrec_errors(options, message):
    with pytest.raises(HotrecError, match=message):
        small_dhe(**options)


def test_training_with_duplicate_ids_gives_the_plain_outputs_and_gradients():
    ids = torch.tensor([[1, 2, 3], [1, 2, 4], [1, 5, 3], [7, 2, 3]])  # many repeats
    target = torch.randn(4, 3, 4, generator=torch.Generator().manual_seed(0))

    def run(forward):
        dhe = small_dhe()
        out = forward(dhe)
        (out - target).pow(2).sum().backward()
        return out.detach(), [p.grad for p in dhe.parameters()]

    deduped, dedup_grads = run(lambda dhe: dhe(ids))  # training mode: distinct ids once
    plain, plain_grads = run(lambda dhe: dhe.decode(ids.t()).transpose(0, 1))
    torch.testing.assert_close(deduped, plain, atol=1e-6, rtol=0)
    for a, b in zip(dedup_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_the_prime_rises_above_the_largest_table_so_ids_never_share_codes():
    from hotrec.config import ModelConfig, OptimConfig
    from hotrec.embeddings.deep_hash import is_prime, prime_for
    from hotrec.models.representations import build_embeddings
    from hotrec.types import Schema, TableSpec

    assert prime_for(1_000_003, 999_999) == 1_000_003  # the configured prime when it suffices
    assert prime_for(1009, 5000) == 5003 and is_prime(5003)
    assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]
    schema = Schema(("I1",), (TableSpec("small", 10), TableSpec("big", 5000)))
    model = ModelConfig(embedding="dhe", embedding_dim=4, bottom_mlp=(4,), top_mlp=(1,),
                        dhe_hashes=8, dhe_buckets=1000, dhe_prime=1009)  # fmt: skip
    dhe = build_embeddings(schema, model, OptimConfig(), torch.Generator().manual_seed(0))
    assert dhe.prime == 5003
    codes = dhe.hash_codes(torch.tensor([[1, 7], [1, 7 + 1009]]))  # x and x + the configured p
    assert not torch.equal(codes[0, 1], codes[1, 1])


def test_a_composite_prime_is_refused():
    with pytest.raises(HotrecError, match="not a prime"):
        small_dhe(prime=1001)  # 7 x 11 x 13


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_and_cpu_give_the_same_codes():
    ids = torch.tensor([[0, 5, 2**31 - 1], [1008, 4_000_000_000, 123456]])
    cpu = small_dhe()
    gpu = small_dhe().to("cuda")
    assert torch.equal(cpu.hash_codes(ids), gpu.hash_codes(ids.cuda()).cpu())
