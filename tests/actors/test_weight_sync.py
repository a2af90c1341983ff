"""The streamed weight source: the bucket plan, one gathered bucket at a time, tied embeddings sent once under the
name vLLM expects, and the wire format engines load (a safetensors file written straight from the bucket)."""

import pytest
import torch
from safetensors.torch import load_file

from actors.weight_sync import BucketSource, from_wire, plan_buckets, sync_parameters, to_wire, write_safetensors

EMBED = "model.language_model.embed_tokens.weight"


@pytest.fixture(scope="module")
def tied_model(tmp_path_factory):
    from actors.model import TinyModelSpec, build_tiny_model, load_policy
    from datagen.corpus import tokenizer_corpus

    path = build_tiny_model(
        tmp_path_factory.mktemp("tied") / "model", tokenizer_corpus(), TinyModelSpec(tie_word_embeddings=True)
    )
    return load_policy(path, "float32")


def test_plan_cuts_buckets_as_vllms_packed_broadcast():
    """A bucket closes after the tensor that takes it past the limit; a tensor larger than the limit stands alone;
    the cut is the one vLLM's packed producer makes on the same tensors."""
    sizes = [("a", 400), ("b", 400), ("c", 300), ("d", 2000), ("e", 10), ("f", 10)]
    assert plan_buckets(sizes, 1000) == [["a", "b", "c"], ["d"], ["e", "f"]]
    assert plan_buckets(sizes, 10**9) == [["a", "b", "c", "d", "e", "f"]]
    assert plan_buckets([], 1000) == []
    with pytest.raises(ValueError, match="bucket size"):
        plan_buckets(sizes, 0)
    packed = pytest.importorskip("vllm.distributed.weight_transfer.packed_tensor")
    state = {n: torch.zeros(b // 4) for n, b in sizes}
    it, cuts = iter(state.items()), []
    while (chunk := packed.pack_tensors(it, lambda item: item[1], 1000)) is not None:
        cuts.append(chunk.names)
    assert cuts == plan_buckets(sizes, 1000)


def test_tied_embedding_is_sent_once_under_the_canonical_name(tied_model):
    state = tied_model.state_dict()
    assert state["lm_head.weight"].data_ptr() == state[EMBED].data_ptr()  # really tied
    names = [n for n, _ in sync_parameters(tied_model)]
    assert "lm_head.weight" not in names and EMBED in names
    assert set(state) - set(names) == {"lm_head.weight"}  # nothing else is left out

    source = BucketSource(tied_model, 256 << 10)
    assert len(source.plan) > 3 and [n for b in source.plan for n in b] == names
    seen = []
    for names_in_plan, bucket in zip(source.plan, source.buckets()):
        assert [n for n, _ in bucket] == names_in_plan
        nbytes = sum(t.numel() * t.element_size() for _, t in bucket)
        last = bucket[-1][1].numel() * bucket[-1][1].element_size()
        assert nbytes - last <= source.bucket_bytes  # only the closing tensor may take it past the limit
        seen += bucket
    assert len(seen) == len(names) and all(torch.equal(t, state[n]) for n, t in seen)
    assert source.nbytes == sum(state[n].numel() * 4 for n in names)


def test_wire_format_round_trips_and_loads_as_safetensors(tmp_path):
    gen = torch.Generator().manual_seed(0)
    bucket = [
        ("w.f32", torch.randn(3, 5, generator=gen)),
        ("w.bf16", torch.randn(7, generator=gen).to(torch.bfloat16)),
        ("w.scalar", torch.tensor(2.5)),
        ("w.view", torch.randn(4, 6, generator=gen).t()),  # not contiguous
    ]
    wire = to_wire(bucket, index=1, count=3, version=7)
    assert (wire.index, wire.count, wire.version) == (1, 3, 7)
    assert wire.nbytes == sum(t.numel() * t.element_size() for _, t in bucket)
    back = dict(from_wire(wire))
    for name, t in bucket:
        assert back[name].dtype == t.dtype and torch.equal(back[name], t)
    path = tmp_path / "b.st"
    write_safetensors(wire, str(path))
    loaded = load_file(str(path))
    assert list(loaded) == [n for n, _ in bucket]
    for name, t in bucket:
        assert loaded[name].dtype == t.dtype and torch.equal(loaded[name], t)


def test_sync_settings_are_validated():
    from actors.settings import RolloutSettings

    assert RolloutSettings(engine="vllm", device="cuda", tensor_parallel_size=2).tensor_parallel_size == 2
    with pytest.raises(ValueError, match=r"rollout.tensor_parallel_size=2 needs rollout.engine=vllm on"):
        RolloutSettings(tensor_parallel_size=2)  # device auto: could be the CPU build
    with pytest.raises(ValueError, match=r"rollout.tensor_parallel_size=2 needs"):
        RolloutSettings(engine="hf", device="cuda", tensor_parallel_size=2)
    with pytest.raises(ValueError, match=r"rollout.tensor_parallel_size must be an integer >= 1"):
        RolloutSettings(tensor_parallel_size=0)
    with pytest.raises(ValueError, match=r"rollout.weight_sync_timeout_s must be a finite number > 0"):
        RolloutSettings(weight_sync_timeout_s=0)


def test_nccl_sender_gives_each_tensor_parallel_engine_its_ranks():
    """Engine i's vLLM workers take NCCL ranks 1 + i * TP ... (vLLM numbers them rank_offset + worker rank), and the
    group holds the sender plus every engine's workers."""
    pytest.importorskip("vllm")
    from actors.vllm_engine import NCCLSenderConfig

    info = NCCLSenderConfig("10.0.0.1", 29555, num_engines=3, bucket_bytes=1 << 20, ranks_per_engine=2)
    assert info.trainer_init_info().world_size == 7
