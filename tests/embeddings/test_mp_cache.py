import numpy as np
import pytest
import torch

from hotrec.embeddings.deep_hash import DeepHashEmbedding
from hotrec.embeddings.mp_cache import decode_unique, popular_ids_from_counts
from hotrec.errors import HotrecError
from hotrec.placement.popularity import PopularityProfiler


def trained_dhe(batchnorm: bool = False) -> DeepHashEmbedding:
    """A small DHE after a few SGD steps (non-trivial weights and BatchNorm statistics)."""
    dhe = DeepHashEmbedding(3, 4, num_hashes=32, hidden=(16,), batchnorm=batchnorm, seed=1)
    opt = torch.optim.SGD(dhe.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        opt.zero_grad()
        (dhe(torch.randint(0, 500, (64, 3), generator=gen)) - 1).pow(2).mean().backward()
        opt.step()
    return dhe.eval()


def skewed_ids(n: int = 300, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.minimum(rng.zipf(1.3, (n, 3)), 400))  # many duplicates


def plain(dhe: DeepHashEmbedding, ids: torch.Tensor) -> torch.Tensor:
    """The reference: every lookup through the decoder, no dedup, no cache."""
    return dhe.decode(ids.t()).transpose(0, 1)  # [B, F, D]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_dedup_in_eval_mode_returns_the_decoder_outputs(batchnorm):
    dhe = trained_dhe(batchnorm)
    ids = skewed_ids()
    assert len(torch.unique(ids[:, 0])) < 100  # the batch really has duplicates
    with torch.no_grad():
        torch.testing.assert_close(dhe(ids), plain(dhe, ids), atol=1e-6, rtol=0)


def test_decode_unique_decodes_each_distinct_pair_once():
    seen = []

    def decode(grid):  # [F, W] -> [F, W, 1]: the id itself, plus 1000 per feature
        seen.append(grid.clone())
        return (grid + 1000 * torch.arange(grid.shape[0]).unsqueeze(1)).unsqueeze(2).float()

    features = torch.tensor([0, 1, 0, 0, 2, 1])
    ids = torch.tensor([5, 5, 7, 5, 9, 8])
    out = decode_unique(decode, features, ids, 3, bound=100)
    assert out.squeeze(1).tolist() == [5, 1005, 7, 5, 2009, 1008]
    assert seen[0].tolist() == [[5, 7], [5, 8], [9, 0]]  # distinct ids per feature, padded


def test_cache_hits_skip_the_decoder_and_match_it():
    dhe = trained_dhe(batchnorm=True)
    ids = skewed_ids()
    popular = [np.array([1, 2, 3]), np.array([1]), np.array([], dtype=np.int64)]
    dhe.build_cache(popular)
    with torch.no_grad():
        torch.testing.assert_close(dhe(ids), plain(dhe, ids), atol=1e-6, rtol=0)
    expected_hits = int(np.isin(ids[:, 0], [1, 2, 3]).sum() + (ids[:, 1] == 1).sum())
    stats = dhe.cache_stats()
    assert stats["hits"] == expected_hits > 0
    assert stats["lookups"] == ids.numel() and stats["cached_ids"] == 4

    calls = []
    dhe.decoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    with torch.no_grad():
        dhe(torch.tensor([[1, 1, 1], [2, 1, 1]]))  # feature 2 is not cached
    assert calls == [(3, 1, 32)]  # one decoder pass: only feature 2's one distinct id


def test_cache_follows_the_decoder_after_training_and_loading():
    dhe = trained_dhe()
    ids = skewed_ids()
    dhe.build_cache(popular_ids_from_counts(np.ones(30), [0, 10, 20], [10, 10, 10], 10))
    opt = torch.optim.SGD(dhe.parameters(), lr=0.5)
    dhe.train()
    dhe(ids).sum().backward()  # training mode ignores the cache, gradients flow
    opt.step()
    dhe.eval()
    with torch.no_grad():
        torch.testing.assert_close(dhe(ids), plain(dhe, ids), atol=1e-6, rtol=0)
        other = DeepHashEmbedding(3, 4, num_hashes=32, hidden=(16,), seed=5).eval()
        dhe.load_state_dict(other.state_dict())
        torch.testing.assert_close(dhe(ids), plain(other, ids), atol=1e-6, rtol=0)
    assert "cache" not in " ".join(dhe.state_dict())  # never saved with the model


def test_build_cache_needs_one_list_per_feature():
    with pytest.raises(HotrecError, match="one id list per feature"):
        trained_dhe().build_cache([np.array([1])])


def test_popular_ids_from_counts_per_table():
    counts = np.array([0, 5, 5, 9, 0, 1, 3, 3, 0, 0])
    tops = popular_ids_from_counts(counts, [0, 4, 8], [4, 4, 2], per_feature=2)
    assert [t.tolist() for t in tops] == [[3, 1], [2, 3], []]  # ties: lower id; unseen: never
    assert all(t.dtype == np.int64 for t in tops)


def test_popular_ids_from_the_profilers_counts():
    sparse = np.array([[1, 0], [1, 2], [3, 2], [1, 2]])
    prof = PopularityProfiler(sample_fraction=1.0, block_rows=2).fit(sparse, [4, 3])
    tops = popular_ids_from_counts(prof.counts_, prof.table_offsets_, prof.table_rows_, 1)
    assert [t.tolist() for t in tops] == [[1], [2]]


def test_large_inference_batches_are_decoded_in_chunks(monkeypatch):
    import hotrec.embeddings.deep_hash as deep_hash

    dhe = trained_dhe()
    ids = torch.randint(0, 10**6, (200, 3))  # nearly all distinct
    with torch.no_grad():
        whole = dhe(ids)
        monkeypatch.setattr(deep_hash, "INFER_CODES", 3 * 32 * 7)  # 7 rows per pass
        calls = []
        dhe.decoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[1]))
        chunked = dhe(ids)
    assert max(calls) == 7 and sum(calls) >= 200
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(chunked, plain(dhe, ids), atol=1e-6, rtol=0)
