"""The transformers rollout engine and the rollout worker: prompt groups as declared records, image tensors stored
once per group."""

import pickle

import pytest

from actors.records import PromptGroup

from ..conftest import demo, make_requests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_engine(tiny_model):
    from actors.rollout import HFGenerateEngine

    return HFGenerateEngine(tiny_model, demo("rollout", engine="hf", max_new_tokens=12), "float32")


def test_groups_are_declared_records(hf_engine, stvqa):
    groups = hf_engine.generate(make_requests(stvqa, 2), 3)
    assert [type(g) for g in groups] == [PromptGroup, PromptGroup]
    for g in groups:
        assert len(g) == 3 and g.prompt.images is not None
        assert g.prompt.images.image_grid_thw.shape == (1, 3)
        for r in g.responses:
            assert r.finish_reason in ("stop", "length") and len(r.token_ids) <= 12
            assert not set(r.token_ids) & set(hf_engine.encoder.forbidden_ids)


def test_greedy_is_deterministic(hf_engine, stvqa):
    reqs = make_requests(stvqa, 1)
    a = hf_engine.generate(reqs, 2, temperature=0.0)[0]
    b = hf_engine.generate(reqs, 2, temperature=0.0)[0]
    assert a.responses[0].token_ids == a.responses[1].token_ids == b.responses[0].token_ids


def test_object_store_bytes_do_not_grow_with_n_for_the_image(ray_local, tiny_model, stvqa):
    """A step's object-store payload grows with n only by the response tokens; the image is stored once per group."""
    ray = ray_local
    from actors.rollout import RolloutWorker

    worker = RolloutWorker.options(num_cpus=0.5).remote(
        "w", tiny_model, demo("rollout", engine="hf", max_new_tokens=4), "float32", 0
    )
    req = make_requests(stvqa, 1)
    sizes, image_bytes = {}, None
    for n in (2, 8):
        _, ref = worker.generate.options(num_returns=2).remote(req, n)
        group = ray.get(ref)
        image_bytes = group.prompt.images.nbytes()
        sizes[n] = len(pickle.dumps(group))
    growth = sizes[8] - sizes[2]
    # 6 more responses of at most 4 tokens each: a few hundred bytes; one more image copy alone would be image_bytes
    assert image_bytes > 5000
    assert growth < image_bytes / 4, (sizes, image_bytes)
    ray.kill(worker)
