"""PEFT methods (lora, dora, adalora, ia3, qlora): what trains, what stays frozen, runs, reloads."""

from __future__ import annotations

import importlib.util
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from peft.tuners.adalora import AdaLoraModel
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

import protfit
from protfit.cli import main
from protfit.config import ConfigError, apply_overrides, build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.models import peft_methods
from protfit.models.backbone import base_weight_quantization, load_backbone
from protfit.models.methods import apply_method, check_method_requirements, model_statistics
from protfit.models.peft_methods import AdaLoraAllocation, adalora_schedule
from protfit.models.protein_model import build_model
from protfit.models.sources import ModelError
from protfit.plugins import Plugin, TrainingState
from protfit.training.train import train

METHODS = ["lora", "dora", "adalora", "ia3"]
SEQUENCES = ["MKTAYIAKQR", "ACDEFGHIKL", "WWYKR"]
QKV = {
    "tiny-esm2": {"attention.self.query", "attention.self.key", "attention.self.value"},
    "tiny-bert": {"attention.self.query", "attention.self.key", "attention.self.value"},
    "tiny-t5": {"SelfAttention.q", "SelfAttention.k", "SelfAttention.v"},
}
IA3 = {
    "tiny-esm2": ({"attention.self.key", "attention.self.value", "output.dense"}, {"output.dense"}),
    "tiny-bert": ({"attention.self.key", "attention.self.value", "output.dense"}, {"output.dense"}),
    "tiny-t5": ({"SelfAttention.k", "SelfAttention.v", "DenseReluDense.wo"}, {"DenseReluDense.wo"}),
}


def adapted_modules(model) -> dict[str, BaseTunerLayer]:
    """Adapter layers by name without the layer index (`attention.self.key`)."""
    return {
        re.sub(r"^.*\.\d+\.", "", name): module
        for name, module in model.backbone.encoder.named_modules()
        if isinstance(module, BaseTunerLayer)
    }


def one_step(model, batch) -> None:
    model.train()
    model(**batch).pow(2).mean().backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()


# ---- what trains -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-esm2", "tiny-bert", "tiny-t5"])
@pytest.mark.parametrize("method", METHODS)
def test_adapters_go_on_the_family_defaults_and_only_they_train_in_the_backbone(
    name, method, make_config, encode_batch
):
    cfg = make_config(name=name, method=method, head={"hidden_dims": [8]})
    model = apply_method(build_model(cfg, 2), cfg, total_steps=10)
    adapted = adapted_modules(model)
    if method == "ia3":
        targets, feedforward = IA3[name]
        assert set(adapted) == targets  # not attention.output.dense, which also ends in output.dense
        assert {key for key, module in adapted.items() if module.is_feedforward} == feedforward
    else:
        assert set(adapted) == QKV[name]
    assert model.backbone_trainable
    assert all(param.requires_grad for param in [*model.pooler.parameters(), *model.head.parameters()])
    trainable = {key for key, param in model.backbone.named_parameters() if param.requires_grad}
    assert trainable and all(
        re.search(r"\.(lora_[A-Z]|lora_magnitude_vector|ia3_l)\.", key) for key in trainable
    )

    batch = encode_batch(model.backbone, SEQUENCES)
    before = {key: value.clone() for key, value in model.backbone.state_dict().items()}
    one_step(model, batch)
    after = model.backbone.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    frozen = {key for key, param in model.backbone.named_parameters() if not param.requires_grad}
    assert changed and not changed & frozen  # gradients reached the adapters through the frozen base


@pytest.mark.parametrize("method", METHODS)
def test_model_statistics_count_the_adapters_as_trainable_backbone_parameters(method, make_config):
    cfg = make_config(name="tiny-esm2", method=method, head={"hidden_dims": [8]})
    base = sum(param.numel() for param in build_model(cfg, 2).backbone.parameters())
    model = apply_method(build_model(cfg, 2), cfg, total_steps=10)
    adapters = sum(
        param.numel()
        for key, param in model.backbone.named_parameters()
        if re.search(r"\.(lora_[A-Z]|lora_magnitude_vector|ia3_l)\.", key)
    )
    stats = model_statistics(model)
    backbone = stats["components"]["backbone"]
    head = stats["components"]["head"]["total"]
    assert backbone["trainable"] == adapters > 0
    assert backbone["total"] >= base + adapters  # adalora also adds its (frozen) rank counters
    assert stats["trainable"] == adapters + head
    assert stats["percent_trainable"] == pytest.approx(100 * stats["trainable"] / stats["total"], abs=1e-3)


def test_user_target_modules_are_honoured(make_config):
    cfg = make_config(
        name="tiny-esm2", method="lora", lora={"target_modules": ["value", "attention.output.dense"]}
    )
    model = apply_method(build_model(cfg, 2), cfg, 10)
    assert set(adapted_modules(model)) == {"attention.self.value", "attention.output.dense"}

    cfg = make_config(
        name="tiny-t5", method="ia3", lora={"target_modules": ["q", "wi"], "feedforward_modules": ["wi"]}
    )
    adapted = adapted_modules(apply_method(build_model(cfg, 2), cfg, 10))
    assert {key: module.is_feedforward for key, module in adapted.items()} == {
        "SelfAttention.q": False,
        "DenseReluDense.wi": True,
    }
    cfg = make_config(name="tiny-bert", method="ia3", lora={"target_modules": ["key"]})
    adapted = adapted_modules(apply_method(build_model(cfg, 2), cfg, 10))
    assert {key: module.is_feedforward for key, module in adapted.items()} == {"attention.self.key": False}


def test_a_target_module_that_matches_nothing_lists_the_layers_that_exist(make_config):
    cfg = make_config(name="tiny-esm2", method="lora", lora={"target_modules": ["query", "qkv_proj"]})
    with pytest.raises(ModelError) as error:
        apply_method(build_model(cfg, 2), cfg, 10)
    message = str(error.value)
    assert "model.lora.target_modules: 'qkv_proj' matches no module of 'tiny-esm2'" in message
    for layer in ("attention.self.query", "attention.self.value", "intermediate.dense"):
        assert layer in message

    cfg = make_config(
        name="tiny-t5", method="ia3", lora={"target_modules": ["k", "v"], "feedforward_modules": ["wo"]}
    )
    with pytest.raises(
        ModelError, match=r"feedforward_modules \['wo'\] are not in model.lora.target_modules"
    ):
        apply_method(build_model(cfg, 2), cfg, 10)


def test_a_target_that_is_not_a_layer_is_a_model_error_not_a_peft_trace(make_config):
    cfg = make_config(name="tiny-esm2", method="lora", lora={"target_modules": ["attention"]})
    with pytest.raises(ModelError, match="model.method=lora: peft cannot add adapters here"):
        apply_method(build_model(cfg, 2), cfg, 10)


@pytest.mark.parametrize("method", METHODS)
def test_peft_methods_refuse_the_onehot_baseline(method, make_config):
    cfg = make_config(name="onehot", method=method)
    with pytest.raises(ModelError, match="no transformer weights; use model.method=freeze or full"):
        apply_method(build_model(cfg, 2), cfg, 10)


# ---- AdaLoRA -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [1, 2, 3, 5, 10, 37, 100, 1000])
def test_adalora_schedule_always_leaves_a_pruning_phase(total, make_config):
    tinit, tfinal = adalora_schedule(make_config(method="adalora").model, total)
    assert 0 <= tinit < total - tfinal  # what peft requires
    if total == 100:
        assert (tinit, tfinal) == (10, 20)


def test_adalora_ranks_must_shrink(make_config):
    with pytest.raises(ConfigError, match="adalora_target_r .* must be below adalora_init_r"):
        make_config(method="adalora", lora={"adalora_init_r": 4, "adalora_target_r": 4})
    with pytest.raises(ConfigError, match="adalora_tinit_ratio \\+ adalora_tfinal_ratio must be below 1"):
        make_config(method="adalora", lora={"adalora_tinit_ratio": 0.5, "adalora_tfinal_ratio": 0.5})


def _adalora(make_config, total_steps: int = 10, **lora):
    cfg = make_config(name="tiny-esm2", method="adalora", lora=lora)
    model = apply_method(build_model(cfg, 2), cfg, total_steps)
    (callback,) = [c for c in model.training_plugins if isinstance(c, AdaLoraAllocation)]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return (
        cfg,
        model,
        callback,
        TrainingState(config=cfg, parts=SimpleNamespace(model=model, optimizer=optimizer), run_dir=None),
    )


def test_adalora_orthogonality_penalty_matches_peft_and_its_gradient_is_added(make_config, monkeypatch):
    _, model, callback, state = _adalora(make_config, adalora_orth_reg_weight=0.3)
    tuner = model.backbone.encoder.base_model
    # peft adds weight * penalty to a loss its wrapped model returns; hand it a zero loss to read it
    monkeypatch.setattr(tuner.model, "forward", lambda *args, **kwargs: SimpleNamespace(loss=torch.zeros(())))
    from_peft = tuner(input_ids=None).loss
    assert from_peft.item() == pytest.approx(0.3 * callback.orthogonality_penalty().item(), rel=1e-6)
    assert from_peft.item() > 0

    factors = [p for key, p in tuner.model.named_parameters() if "lora_A" in key or "lora_B" in key]
    expected = torch.autograd.grad(0.3 * callback.orthogonality_penalty(), factors)
    callback.on_before_optimizer_step(state)
    for param, grad in zip(factors, expected, strict=True):
        assert torch.allclose(param.grad, grad)

    _, off_model, off_callback, off_state = _adalora(make_config, adalora_orth_reg_weight=0.0)
    off_callback.on_before_optimizer_step(off_state)
    assert all(param.grad is None for param in off_model.parameters())


def test_adalora_allocates_even_a_one_step_run(make_config, encode_batch):
    cfg, model, callback, state = _adalora(make_config, total_steps=1)
    one_step(model, encode_batch(model.backbone, SEQUENCES))
    state.global_step = 1
    callback.on_after_optimizer_step(state)  # the final allocation, with no earlier importance scores
    pattern = callback.peft_config.rank_pattern
    kept = sum(sum(mask) for mask in pattern.values())
    assert kept == cfg.model.lora.adalora_target_r * len(pattern)


def test_adalora_resumed_after_the_final_allocation_keeps_the_pruned_ranks(make_config):
    _, model, callback, state = _adalora(make_config, total_steps=10)
    tuner = model.backbone.encoder.base_model
    values = [p for key, p in tuner.model.named_parameters() if "lora_E" in key]
    with torch.no_grad():
        for param in values:
            param.copy_(torch.tensor([1.0] * 8 + [0.0] * 4).view_as(param))
    state.global_step = 9  # the checkpoint of step 9; ranks were fixed at step 8
    callback.on_train_start(state)
    with torch.no_grad():
        for param in values:
            param.fill_(2.0)
    state.global_step = 10
    callback.on_after_optimizer_step(state)
    for param in values:
        assert param.view(-1).tolist() == [2.0] * 8 + [0.0] * 4


# ---- QLoRA -------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_qlora_on_cpu_stops_before_any_data_is_read(tmp_path, capsys):
    raw = {
        "data": {"path": str(tmp_path / "no-such-folder"), "problem_type": "regression"},
        "model": {"name": "tiny-esm2", "method": "qlora"},
        "output": {"dir": str(tmp_path / "runs")},
    }
    message = "qlora needs a CUDA GPU (4-bit weights via bitsandbytes); on CPU use method=lora"
    with pytest.raises(RuntimeError) as error:
        train(build_config(raw))
    assert str(error.value) == message
    assert not (tmp_path / "runs").exists()

    config = tmp_path / "qlora.yaml"
    config.write_text(f"data: {{path: {tmp_path / 'no-such-folder'}, problem_type: regression}}\n")
    assert main(["train", str(config), "model.name=tiny-esm2", "model.method=qlora"]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and "Traceback" not in stderr


def test_qlora_with_a_gpu_but_without_bitsandbytes_says_what_to_install(make_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    with pytest.raises(RuntimeError, match="pip install bitsandbytes"):
        check_method_requirements(make_config(method="qlora"))
    cpu = build_config(apply_overrides(make_config(method="qlora").model_dump(), ["train.device=cpu"]))
    with pytest.raises(RuntimeError, match="train.device=cpu"):
        check_method_requirements(cpu)


def test_qlora_loads_the_base_in_nf4_and_other_methods_do_not_quantize(make_config):
    four = base_weight_quantization(make_config(method="qlora").model)
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_use_double_quant
    eight = base_weight_quantization(make_config(method="qlora", lora={"qlora_bits": 8}).model)
    assert eight.load_in_8bit and not eight.load_in_4bit
    assert base_weight_quantization(make_config(method="lora").model) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_quantized_loading_and_qlora_on_a_full_precision_base_are_clear_errors(make_config):
    cfg = make_config(method="qlora")
    with pytest.raises(ModelError, match="need a CUDA GPU"):
        load_backbone(cfg.model, quantization_config=base_weight_quantization(cfg.model))
    plain = build_model(make_config(method="lora"), 2)
    with pytest.raises(ModelError, match="loaded without quantization"):
        peft_methods.qlora(plain, cfg, 10)


# ---- end to end through the recipe ------------------------------------------------------------------


class Spy(Plugin):
    """Adapter weights at the start, every backbone weight at the end of training."""

    def on_train_start(self, state):
        backbone = state.model.backbone
        self.start = {k: p.detach().clone() for k, p in backbone.named_parameters() if p.requires_grad}

    def on_train_end(self, state):
        self.end = {k: p.detach().clone() for k, p in state.model.backbone.named_parameters()}


@pytest.fixture(scope="module")
def peft_runs(tmp_path_factory):
    """One short run per method (gradient accumulation 2), with AdaLoRA's allocation calls recorded."""
    root = tmp_path_factory.mktemp("peft")
    data = write_synthetic_dataset(
        root / "data",
        "single_label_classification",
        n_train=64,
        n_validation=16,
        n_test=16,
        seed=3,
        min_len=20,
        max_len=40,
    )
    calls: list[int] = []
    original = AdaLoraModel.update_and_allocate
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            AdaLoraModel, "update_and_allocate", lambda self, step: calls.append(step) or original(self, step)
        )
        for method in METHODS:
            raw = {
                "data": {"path": str(data), "problem_type": "single_label_classification", "batch_size": 8},
                "model": {"name": "tiny-esm2", "method": method, "head": {"hidden_dims": [16]}},
                "train": {
                    "epochs": 2,
                    "learning_rate": 5e-3,
                    "gradient_accumulation_steps": 2,
                    "progress": False,
                },
                "evaluation": {"bootstrap": {"resamples": 10}, "baselines": {"enabled": False}},
                # keep_last: AdaLoRA's allocation is read from `last` (the live adapters)
                "output": {"dir": str(root), "name": method, "checkpoints": {"keep_last": True}},
            }
            spy = Spy()
            calls_before = len(calls)
            result = train(build_config(raw), plugins=[spy])
            runs[method] = SimpleNamespace(
                cfg=build_config(raw), result=result, spy=spy, calls=calls[calls_before:], data=data
            )
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_training_moves_the_adapters_and_leaves_the_base_bit_identical(peft_runs, method):
    run = peft_runs[method]
    fresh = apply_method(build_model(run.cfg, 3), run.cfg, 1).backbone
    frozen = {k: p for k, p in fresh.named_parameters() if not p.requires_grad}
    assert frozen
    for key, value in frozen.items():
        assert torch.equal(run.spy.end[key], value), key
    assert any(not torch.equal(run.spy.end[key], value) for key, value in run.spy.start.items())
    history = run.result.summary["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    stats = run.result.summary["model_stats"]
    assert 0 < stats["components"]["backbone"]["trainable"] < stats["components"]["backbone"]["total"]


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_checkpoint_holds_adapters_and_head_and_reloads_to_identical_predictions(peft_runs, method):
    run = peft_runs[method]
    saved = load_file(run.result.run_dir / "checkpoints/best/model.safetensors")
    backbone_keys = [key for key in saved if key.startswith("backbone.")]
    assert backbone_keys and all(
        re.search(r"\.(lora_[A-Z]|lora_magnitude_vector|ia3_l)\.", k) for k in backbone_keys
    )
    assert any(key.startswith("head.") for key in saved)

    original = pd.read_csv(run.result.run_dir / "test_predictions.csv")
    sequences = pd.read_csv(run.data / "test.csv")["aa_seq"].tolist()
    reloaded = protfit.load(run.result.run_dir).predict(sequences)
    for column in [c for c in original.columns if c.startswith("prob_")]:
        expected = original[column].to_numpy().astype(np.float32)
        assert np.array_equal(reloaded[column].to_numpy().astype(np.float32), expected), column


@pytest.mark.slow
def test_adalora_gets_the_real_optimizer_step_count_and_allocates_after_every_step(peft_runs):
    # pitfall: the peer's AdaLoRA failed with "total_step is None"
    run = peft_runs["adalora"]
    steps = 2 * math.ceil(math.ceil(64 / 8) / 2)  # epochs x optimizer steps (8 batches, accumulation 2)
    assert run.calls == list(range(1, steps + 1))
    assert all(not other.calls for name, other in peft_runs.items() if name != "adalora")
    saved = load_file(run.result.run_dir / "checkpoints/last/model.safetensors")
    values = [tensor for key, tensor in saved.items() if "lora_E" in key]
    lora = run.cfg.model.lora
    assert sum(int((tensor != 0).sum()) for tensor in values) == lora.adalora_target_r * len(values)
    assert all(tensor.numel() == lora.adalora_init_r for tensor in values)
