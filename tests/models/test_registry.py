from __future__ import annotations

import pytest

from swift.models import registry
from swift.models.registry import (
    DEMO_MODEL_TYPE,
    MODELS,
    ModelSpec,
    get_model_spec,
    list_models,
    match_model_spec,
    register_model,
    suggest_models,
)
from swift.utils.errors import SwiftError


@pytest.fixture
def restore_registry():
    models, index = list(MODELS), dict(registry._INDEX)
    yield
    MODELS[:] = models
    registry._INDEX.clear()
    registry._INDEX.update(index)


def test_catalog_names_are_unique_across_specs():
    seen: dict[str, str] = {}
    for spec in MODELS:
        for name in spec.names():
            key = name.lower()
            assert seen.get(key, spec.model_type) == spec.model_type, f"{name} used twice"
            seen[key] = spec.model_type


def test_catalog_entries_are_well_formed():
    for spec in MODELS:
        assert spec.model_type == spec.model_type.lower()
        assert spec.architectures, spec.model_type
        if spec.model_type != DEMO_MODEL_TYPE:
            assert spec.hf_id and "/" in spec.hf_id and spec.ms_id and "/" in spec.ms_id, spec.model_type
    families = {s.model_type.split("-")[0] for s in MODELS}
    for family in ("qwen2.5", "qwen3", "llama3.1", "llama3.2", "mistral", "glm4", "internlm2.5", "deepseek", "yi",
                   "gemma2", "phi3.5", "swift"):
        assert family in families


@pytest.mark.parametrize("name", ["qwen2.5-0.5b-instruct", "QWEN2.5-0.5B-INSTRUCT", "Qwen/Qwen2.5-0.5B-Instruct",
                                  " qwen/qwen2.5-0.5b-instruct "])
def test_lookup_by_model_type_and_hub_id_is_case_insensitive(name):
    spec = get_model_spec(name)
    assert spec is not None and spec.model_type == "qwen2.5-0.5b-instruct"
    assert spec.template == "qwen2_5"


def test_lookup_by_modelscope_id_and_hub_choice():
    spec = get_model_spec("LLM-Research/Meta-Llama-3.1-8B-Instruct")
    assert spec is get_model_spec("meta-llama/Llama-3.1-8B-Instruct")
    assert spec.hub_id(use_hf=True) == "meta-llama/Llama-3.1-8B-Instruct"
    assert spec.hub_id(use_hf=False) == "LLM-Research/Meta-Llama-3.1-8B-Instruct"


def test_seed_names_resolve():
    qwen = get_model_spec("qwen")
    assert qwen is not None and qwen.hf_id.startswith("Qwen/") and not qwen.is_multimodal
    assert get_model_spec("qwen-7b").hf_id == "Qwen/Qwen2.5-7B-Instruct"
    vl = get_model_spec("qwen-vl")
    assert vl.hf_id == "Qwen/Qwen2-VL-2B-Instruct" and vl.is_multimodal and vl.template == "qwen2_vl"


def test_demo_names():
    for name in ("swift-demo", "demo", "Swift-Demo"):
        spec = get_model_spec(name)
        assert spec.model_type == DEMO_MODEL_TYPE and spec.hf_id is None and spec.hub_id(True) is None


def test_unknown_name_gives_none_and_suggestions():
    assert get_model_spec("no-such-model") is None
    assert get_model_spec("") is None
    assert "qwen2.5-7b-instruct" in suggest_models("qwen2.5-7b-instuct")


def test_list_models_by_tag():
    vision = list_models("vision")
    assert vision and all(s.is_multimodal for s in vision)
    assert len(list_models()) == len(MODELS)


def test_register_model_and_reject_duplicates(restore_registry):
    spec = register_model(ModelSpec("my-model", "me/My-Model", "me/My-Model", aliases=("mine",),
                                    architectures=("LlamaForCausalLM",)))
    assert get_model_spec("mine") is spec and get_model_spec("ME/my-model") is spec and spec in MODELS
    with pytest.raises(SwiftError, match="my-model"):
        register_model(ModelSpec("my-model", None, None))
    with pytest.raises(SwiftError, match="'qwen' is already used"):
        register_model(ModelSpec("other", None, None, aliases=("qwen",)))
    with pytest.raises(SwiftError, match="already used"):
        register_model(ModelSpec("other2", "Qwen/Qwen2.5-7B-Instruct", None))
    assert get_model_spec("other") is None and get_model_spec("other2") is None


def test_match_model_spec_from_folder_names(tmp_path):
    plain = tmp_path / "Qwen2.5-1.5B-Instruct"
    cached = tmp_path / "hub" / "models--Qwen--Qwen3-0.6B" / "snapshots" / "abc123"
    ms = tmp_path / "LLM-Research" / "Meta-Llama-3.1-8B-Instruct"
    for p in (plain, cached, ms):
        p.mkdir(parents=True)
    assert match_model_spec(plain).model_type == "qwen2.5-1.5b-instruct"
    assert match_model_spec(cached).model_type == "qwen3-0.6b"
    assert match_model_spec(ms).model_type == "llama3.1-8b-instruct"
    assert match_model_spec(tmp_path / "something-else") is None
