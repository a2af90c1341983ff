"""The vLLM rollout engine on vLLM's CPU build: one engine (tiny Qwen2.5-VL model, PIL images) shared by the module.

Checks what GRPO relies on: the prompt the engine samples from is token-for-token and pixel-for-pixel the one the
learner scores; n samples per prompt in one call with finish reasons; image tokens never generated; the engine's
sampled-token log-probs agree with the learner's forward pass at the sampling temperature, before and after an
in-place weight update; and the engine runs inside a Ray actor whose death takes the engine's processes along.
"""

import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from actors.records import RolloutRequest, TaskSample
from actors.settings import RolloutSettings
from actors.vllm_engine import (
    NCCLSenderConfig,
    bucket_bytes,
    collapse_image_tokens,
    nccl_weight_transfer_config,
    plan_buckets,
)

from ..conftest import demo

TEMPERATURE = 0.7
TOLERANCE = 0.05
"""Mean |engine log-prob - actors.policy.token_logprobs| allowed (float32 both sides)."""
EXACT = 1e-4
"""Mean |engine log-prob - exact reference| allowed (see _exact_diff): float32 rounding only."""


def _image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        x1, y1 = x0 + int(rng.integers(5, w // 2)), y0 + int(rng.integers(5, h // 2))
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


@pytest.fixture(scope="module")
def requests_():
    from rewards.prompt import PromptBuilder

    prompts = PromptBuilder(demo("prompt"))
    out = []
    for i, (w, h) in enumerate([(640, 480), (200, 300), (333, 97)]):
        image = _image(w, h, seed=i)
        out.append(
            RolloutRequest(
                uid=f"t-{i}",
                index=i,
                messages=prompts.messages("Is the red box left of the cup?", ["yes", "no"], (w, h)),
                images=[prompts.image(image)],
                sample=TaskSample(f"row{i}", "<answer>(A) yes</answer>", (w, h), "relation"),
            )
        )
    return out


@pytest.fixture(scope="module")
def engine(tiny_model):
    from actors.vllm_engine import VLLMEngine

    settings = demo("rollout", temperature=TEMPERATURE, max_new_tokens=24, max_model_len=1024, cpu_kv_cache_gb=1)
    e = VLLMEngine(tiny_model, settings, "float32", seed=0)
    print(f"\nvLLM engine start-up: {e.startup_seconds:.1f} s")
    yield e
    e.close()


@pytest.fixture(scope="module")
def learner(tiny_model):
    from actors.model import load_policy

    return load_policy(tiny_model, "float32").eval()


def _pairs(groups):
    return [(g, r) for g in groups for r in g.responses]


def _diff(rows: list[list[float]], groups) -> float:
    diffs = []
    for learner_lp, (_, r) in zip(rows, _pairs(groups)):
        assert len(learner_lp) == len(r.engine_logprobs) == len(r.token_ids)
        diffs += [abs(a - b) for a, b in zip(learner_lp, r.engine_logprobs)]
    return sum(diffs) / len(diffs)


def _learner_diff(model, groups, pad_id: int) -> float:
    """Mean |engine - learner| over all sampled tokens, the learner scoring with actors.policy.token_logprobs."""
    from actors.policy import Sequence, token_logprobs

    pairs = _pairs(groups)
    logprobs, mask = token_logprobs(model, [Sequence(g.prompt, r.token_ids) for g, r in pairs], pad_id, TEMPERATURE)
    return _diff([logprobs[i][mask[i]].tolist() for i in range(len(pairs))], groups)


def _exact_diff(model, groups, engine) -> float:
    """Mean |engine - reference|, the reference being the transformers forward pass of the distribution the engine
    samples from: Qwen2.5-VL's 3D (mrope) positions for image tokens (transformers computes them only when given
    ``mm_token_type_ids``) and the forbidden tokens' logits removed (the engine's logit bias)."""
    from actors.policy import Sequence, collate

    pairs = _pairs(groups)
    kwargs, target, mask = collate(
        [Sequence(g.prompt, r.token_ids) for g, r in pairs], engine.encoder.pad_token_id, engine.image_token_id
    )
    with torch.no_grad():
        logits = model(**kwargs, use_cache=False).logits[:, :-1].float() / TEMPERATURE
    logits[..., engine.encoder.forbidden_ids] = -float("inf")
    logprobs = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return _diff([logprobs[i][mask[i]].tolist() for i in range(len(pairs))], groups)


def test_collapse_image_tokens():
    assert collapse_image_tokens([1, 9, 9, 9, 2, 9, 3, 9, 9], 9) == [1, 9, 2, 9, 3, 9]
    assert collapse_image_tokens([], 9) == []


@pytest.mark.slow
def test_engine_samples_n_per_prompt_from_the_encoders_prompt(engine, requests_, tiny_model):
    from transformers import AutoImageProcessor
    from vllm import SamplingParams

    enc = engine.encoder
    groups = engine.generate(requests_, 3)
    assert [g.uid for g in groups] == [r.uid for r in requests_]
    assert [g.index for g in groups] == [0, 1, 2]
    forbidden = set(enc.forbidden_ids)
    for g, req in zip(groups, requests_):
        assert g.sample is req.sample and len(g) == 3
        assert g.prompt.input_ids == enc.encode(req.messages, req.images).input_ids
        assert g.prompt.images is not None and g.prompt.images.image_grid_thw.shape == (1, 3)
        for r in g.responses:
            assert r.finish_reason in ("stop", "length")
            assert 1 <= len(r.token_ids) <= 24
            if r.finish_reason == "length":
                assert len(r.token_ids) == 24
            else:
                assert r.token_ids[-1] == enc.eos_token_id
            assert not set(r.token_ids) & forbidden
            assert len(r.engine_logprobs) == len(r.token_ids) and all(lp <= 0 for lp in r.engine_logprobs)
            assert r.text == enc.decode(r.token_ids)
    # vLLM's own view of the prompt: its expansion of the image placeholders equals the encoder's token ids ...
    inputs = [engine.engine_input(g.prompt, req.images) for g, req in zip(groups, requests_)]
    outs = engine.llm.generate(inputs, SamplingParams(max_tokens=1), use_tqdm=False)
    for g, out in zip(groups, outs):
        assert list(out.prompt_token_ids) == g.prompt.input_ids
    # ... and its image processor, given the engine's resized images, computes the encoder's pixel values
    processor = AutoImageProcessor.from_pretrained(tiny_model)
    for g, item in zip(groups, inputs):
        px = processor(images=[item["multi_modal_data"]["image"]], return_tensors="pt")
        assert torch.equal(px["image_grid_thw"], g.prompt.images.image_grid_thw)
        assert (px["pixel_values"] - g.prompt.images.pixel_values).abs().max() < 1e-5


@pytest.mark.slow
def test_greedy_and_seeded_sampling_are_reproducible(engine, requests_):
    a = engine.generate(requests_[:2], 2, temperature=0.0, max_new_tokens=8)
    b = engine.generate(requests_[:2], 2, temperature=0.0, max_new_tokens=8)
    for ga, gb in zip(a, b):
        assert ga.responses[0].token_ids == ga.responses[1].token_ids == gb.responses[0].token_ids
    seeded = [RolloutRequest(r.uid, r.index, r.messages, r.images, r.sample, seed=7) for r in requests_[:1]]
    x = engine.generate(seeded, 2, max_new_tokens=8)[0]
    y = engine.generate(seeded, 2, max_new_tokens=8)[0]
    assert [r.token_ids for r in x.responses] == [r.token_ids for r in y.responses]
    assert x.responses[0].token_ids != x.responses[1].token_ids  # the k-th sample gets seed + k


@pytest.mark.slow
def test_many_seeded_prompts_beyond_one_step_token_budget(engine, requests_):
    """More prompt tokens than vLLM's default step budget (4,096 on CPU), every request seeded, as in training: with
    chunked prefill the engine died rewinding a CPU generator ("CPU Generator does not use offset")."""
    from actors.vllm_engine import CPU_MAX_BATCHED_TOKENS
    from rewards.prompt import PromptBuilder

    prompts = PromptBuilder(demo("prompt"))
    seeded = []
    for i in range(36):  # distinct images: no prefix shared past the first image token, every prompt prefilled
        w, h = 200 + 7 * i, 300 - 3 * i
        seeded.append(
            RolloutRequest(
                f"s-{i}",
                i,
                prompts.messages("Is the red box left of the cup?", ["yes", "no"], (w, h)),
                [prompts.image(_image(w, h, seed=100 + i))],
                requests_[0].sample,
                seed=100 + i,
            )
        )
    prompt_tokens = sum(len(g.prompt.input_ids) for g in engine.generate(seeded[:3], 1, max_new_tokens=1))
    assert prompt_tokens * 12 > 4096 and engine.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens == (
        CPU_MAX_BATCHED_TOKENS
    )
    groups = engine.generate(seeded, 2, max_new_tokens=4)
    assert len(groups) == len(seeded) and all(len(g.responses) == 2 for g in groups)


@pytest.mark.slow
def test_engine_logprobs_match_the_learner(engine, learner, requests_):
    groups = engine.generate(requests_, 4, max_new_tokens=32)
    diff, exact = _learner_diff(learner, groups, engine.encoder.pad_token_id), _exact_diff(learner, groups, engine)
    tokens = sum(g.response_tokens for g in groups)
    print(
        f"\nengine vs learner log-probs (float32, T={TEMPERATURE}, {tokens} tokens): mean |diff| {diff:.5f} to "
        f"actors.policy.token_logprobs, {exact:.2e} to the exact reference"
    )
    assert diff < TOLERANCE
    assert exact < EXACT


@pytest.mark.slow
def test_weight_update_reaches_the_engine(engine, learner, requests_, tiny_model):
    from actors.model import load_policy

    old = {k: v.clone() for k, v in learner.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    new = {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in old.items()}
    updated = load_policy(tiny_model, "float32").eval()
    updated.load_state_dict(new)
    try:
        start = time.perf_counter()
        engine.load_weights(new)
        print(f"\nweight sync (object store path, {len(new)} tensors): {time.perf_counter() - start:.2f} s")
        groups = engine.generate(requests_, 4, max_new_tokens=32)
        pad = engine.encoder.pad_token_id
        diff_new, diff_old = _learner_diff(updated, groups, pad), _learner_diff(learner, groups, pad)
        exact = _exact_diff(updated, groups, engine)
        print(
            f"after update: mean |diff| to the new weights {diff_new:.5f} (exact reference {exact:.2e}), "
            f"to the old weights {diff_old:.5f}"
        )
        assert diff_new < TOLERANCE and exact < EXACT
        assert diff_old > 4 * TOLERANCE

        # weights whose every next token is the stop token: finish reason "stop", stop token kept
        eos = engine.encoder.eos_token_id
        forced = dict(new)
        embed = next(k for k in forced if k.endswith("embed_tokens.weight"))
        forced[embed] = forced[embed].clone()
        forced[embed][:, 0] += 1000.0  # the residual stream points along dim 0 at every generated position
        forced["lm_head.weight"] = forced["lm_head.weight"].clone()
        forced["lm_head.weight"][eos, 0] = 50.0
        engine.load_weights(forced)
        for g in engine.generate(requests_[:2], 2, max_new_tokens=8):
            for r in g.responses:
                assert (r.finish_reason, r.token_ids, r.text) == ("stop", [eos], "")
                assert r.finished and r.engine_logprobs[0] > -1e-3
    finally:
        engine.load_weights(old)


@pytest.mark.slow
def test_streamed_buckets_reach_the_engine(engine, learner, requests_, tiny_model):
    """The object-store path's streamed update: buckets of about 256 KB loaded one by one into vLLM's layerwise
    in-place reload; afterwards the engine samples from the new weights."""
    from actors.model import load_policy
    from actors.weight_sync import BucketSource, to_wire

    gen = torch.Generator().manual_seed(2)
    updated = load_policy(tiny_model, "float32").eval()
    with torch.no_grad():
        for p in updated.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    source = BucketSource(updated, 256 << 10)
    try:
        start = time.perf_counter()
        engine.begin_weight_stream()
        loaded = sum(
            engine.load_weight_bucket(to_wire(b, i, len(source.plan), 1)) for i, b in enumerate(source.buckets())
        )
        engine.finish_weight_stream()
        print(f"\nstreamed weight sync ({len(source.plan)} buckets): {time.perf_counter() - start:.2f} s")
        assert len(source.plan) > 3 and loaded == len(source.info)
        groups = engine.generate(requests_, 4, max_new_tokens=32)
        pad = engine.encoder.pad_token_id
        diff_new, diff_old = _learner_diff(updated, groups, pad), _learner_diff(learner, groups, pad)
        assert diff_new < TOLERANCE and _exact_diff(updated, groups, engine) < EXACT
        assert diff_old > 4 * TOLERANCE
    finally:
        engine.load_weights(learner.state_dict())


@pytest.mark.slow
def test_engine_in_a_ray_actor_dies_with_it(ray_local, tiny_model, requests_):
    import psutil

    ray = ray_local

    @ray.remote(num_cpus=1)
    class Worker:
        def __init__(self, path):
            from actors.vllm_engine import VLLMEngine

            self.engine = VLLMEngine(path, demo("rollout", max_new_tokens=8), "float32", seed=1)

        def children(self):
            return self.engine.child_pids()

        def generate(self, reqs, n):
            return self.engine.generate(reqs, n)

    worker = Worker.remote(tiny_model)
    children = ray.get(worker.children.remote(), timeout=300)
    assert children, "vLLM started no engine-core process"
    groups = ray.get(worker.generate.remote(requests_[:2], 2), timeout=300)
    assert [len(g) for g in groups] == [2, 2]
    assert all(1 <= len(r.token_ids) <= 8 for g in groups for r in g.responses)
    ray.kill(worker)

    def alive():
        out = []
        for pid in children:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    deadline = time.monotonic() + 60
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(), f"engine processes {alive()} outlived their Ray actor"


def test_nccl_weight_sync_buckets_and_config():
    """The GPU path's pieces that run without a GPU: bucketing as vLLM's packed broadcast cuts it (and its bytes
    unpack to the same tensors), the sender's init info and the engine-side config."""
    pytest.importorskip("vllm")
    from vllm.distributed.weight_transfer.packed_tensor import pack_tensors, unpack_tensor
    from vllm.engine.arg_utils import EngineArgs

    gen = torch.Generator().manual_seed(0)
    state = {}
    for i, (shape, dtype) in enumerate(
        [
            ((300, 300), torch.float32),
            ((64,), torch.float32),
            ((700, 500), torch.bfloat16),
            ((1000, 100), torch.float32),
            ((10, 10), torch.bfloat16),
        ]
    ):
        state[f"model.layers.{i}.weight"] = torch.randn(shape, generator=gen).to(dtype)
    nbytes = bucket_bytes(RolloutSettings(weight_sync="nccl", weight_sync_bucket_mb=1))
    assert nbytes == 1 << 20
    plan = plan_buckets(state, nbytes)
    assert len(plan) > 1 and [n for b in plan for n in b] == list(state)

    it, chunks = iter(state.items()), []
    while (chunk := pack_tensors(it, lambda item: item[1], nbytes)) is not None:
        chunks.append(chunk)
    assert [c.names for c in chunks] == plan
    for c in chunks:
        for name, tensor in unpack_tensor(c.packed_tensor, c.names, c.shapes, c.dtypes, c.tensor_sizes):
            assert tensor.dtype == state[name].dtype and torch.equal(tensor, state[name])

    info = NCCLSenderConfig("10.0.0.1", 29555, num_engines=3, bucket_bytes=nbytes).trainer_init_info()
    assert (info.world_size, info.is_sender, info.packed, info.packed_buffer_size_bytes) == (4, True, True, nbytes)
    config = nccl_weight_transfer_config()
    assert config.backend == "nccl"
    assert EngineArgs(model="unused", weight_transfer_config=config).weight_transfer_config.backend == "nccl"


def test_rollout_worker_sync_client_gives_each_engine_its_rank():
    from actors.vllm_engine import RolloutWorkerSyncClient

    calls = []

    class Handle:
        def __init__(self, i):
            self.i = i
            self.weight_transfer = self

        def remote(self, method, *args):
            calls.append((self.i, method, args))
            return (self.i, method)

    client = RolloutWorkerSyncClient([Handle(0), Handle(1), Handle(2)], ranks_per_engine=2, get=lambda refs: refs)
    client.init_weight_transfer_engine({"master_address": "10.0.0.1", "master_port": 1, "rank_offset": 1})
    assert [c[2][0]["init_info"]["rank_offset"] for c in calls] == [1, 3, 5]
    calls.clear()
    client.start_weight_update()
    client.update_weights({"names": ["w"], "dtype_names": ["float32"], "shapes": [[2]]})
    client.finish_weight_update()
    assert [(c[0], c[1]) for c in calls] == [
        (i, m) for m in ("start_weight_update", "update_weights", "finish_weight_update") for i in range(3)
    ]
    assert calls[3][2] == ({"update_info": {"names": ["w"], "dtype_names": ["float32"], "shapes": [[2]]}},)
