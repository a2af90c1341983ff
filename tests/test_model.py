import pytest
import torch

from actors.model import PromptEncoder, load_policy

from .conftest import make_request


def test_tiny_model_is_qwen25vl(tiny_model):
    m = load_policy(tiny_model)
    assert m.config.model_type == "qwen2_5_vl"
    assert sum(p.numel() for p in m.parameters()) < 2_000_000


def test_encoder_expands_image_tokens(tiny_model, stvqa):
    enc = PromptEncoder(tiny_model)
    req = make_request(stvqa[0])
    e = enc.encode(req["messages"], req["images"])
    n_img = sum(1 for t in e["input_ids"] if t == enc.tokenizer.convert_tokens_to_ids("<|image_pad|>"))
    assert n_img == int(e["image_grid_thw"].prod()) // 4
    with pytest.raises(ValueError, match="image slots"):
        enc.encode(req["messages"], [])


def test_hf_engine_generates_groups(tiny_model, stvqa):
    from actors.rollout import HFGenerateEngine, SamplingConfig

    eng = HFGenerateEngine(tiny_model, batch_size=4)
    reqs = [make_request(stvqa[i], i) for i in range(2)]
    out = eng.generate(reqs, 3, SamplingConfig(max_new_tokens=12))
    assert len(out) == 6 and [t["group"] for t in out] == [0, 0, 0, 1, 1, 1]
    enc = eng.encoder
    for t in out:
        assert 1 <= len(t["response_ids"]) <= 12
        assert not set(t["response_ids"]) & set(enc.forbidden_ids)
        assert t["pixel_values"] is not None


def test_weight_load_rejects_mismatch(tiny_model):
    from actors.rollout import HFGenerateEngine

    eng = HFGenerateEngine(tiny_model)
    with pytest.raises(ValueError, match="weight sync mismatch"):
        eng.load_weights({"bogus": torch.zeros(1)})


def test_vllm_engine_missing_gives_clear_error(tiny_model):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm installed")
    except ImportError:
        pass
    from actors.rollout import VLLMEngine

    with pytest.raises(RuntimeError, match="needs the vllm package"):
        VLLMEngine(tiny_model)


def test_warm_start_lowers_loss(tmp_path, stvqa):
    from actors.model import build_tiny_model
    from actors.warmstart import sft_warm_start

    p = build_tiny_model(tmp_path / "m")
    info = sft_warm_start(p, stvqa, steps=12, batch_size=4, lr=3e-3)
    assert info["last_loss"] < info["first_loss"]
