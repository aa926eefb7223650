import subprocess
import sys
import textwrap

import pytest

from protfit.registry import RegistryError, list_registries


def test_every_registry_loads_and_its_declared_builtin_names_match_its_modules():
    # Loading checks a registry's declared built-in names against what its modules register, so a
    # built-in added without its declaration fails here instead of being refused by the config.
    for registry in list_registries().values():
        assert registry.known_names() == registry.names()


def test_declared_names_are_checked_without_import_and_verified_on_load(tmp_path, monkeypatch):
    (tmp_path / "holder.py").write_text(
        "from protfit.registry import Registry\n"
        "THINGS = Registry('thing', 'x.thing', ('things_module',), ('a', 'b'))\n"
    )
    (tmp_path / "things_module.py").write_text(
        "from holder import THINGS\n\n@THINGS.register('a')\ndef a(): ...\n\n@THINGS.register('c')\ndef c(): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from holder import THINGS

    assert THINGS.check("b") == "b"
    with pytest.raises(RegistryError, match=r"unknown thing 'z'; choose from a, b"):
        THINGS.check("z")
    assert "things_module" not in sys.modules  # neither answer imported the module
    with pytest.raises(
        RegistryError, match=r"registered but not declared \['c'\], declared but not registered \['b'\]"
    ):
        THINGS.names()


def test_a_package_is_scanned_so_a_new_module_needs_no_list(tmp_path, monkeypatch):
    package = tmp_path / "user_things"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("first", "second"):
        (package / f"{name}.py").write_text(
            f"from holder_scan import THINGS\n\n@THINGS.register('{name}')\ndef {name}(): ...\n"
        )
    (tmp_path / "holder_scan.py").write_text(
        "from protfit.registry import Registry\nTHINGS = Registry('thing', 'x.thing', ('user_things',))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from holder_scan import THINGS

    assert THINGS.names() == ["first", "second"]


def test_a_config_error_imports_neither_torch_nor_transformers_nor_peft():
    # `protfit train` with a mistyped name must answer at once (issue #27): checking the config and
    # the model name imports no heavy library. Run in a fresh interpreter, since tests import torch.
    script = textwrap.dedent(
        """
        import sys
        from protfit.config import ConfigError, build_config
        from protfit.models.sources import ModelError, resolve_model_or_fail

        data = {"path": "x", "problem_type": "single_label_classification"}
        model = {"name": "tiny-esm3", "method": "lora", "pooler": "attention1d", "family": "esm"}
        valid = {
            "data": data,
            "model": model,
            "train": {"scheduler": {"name": "cosine"}, "early_stopping": {"monitor": "auroc"}},
            "evaluation": {"metrics": ["mcc", "f1"]},
            "output": {"trackers": ["tensorboard"]},
        }
        cfg = build_config(valid)
        assert cfg.monitor_mode == "max"
        try:
            resolve_model_or_fail(cfg.model.name)
        except ModelError as error:
            assert "did you mean tiny-esm2" in str(error), error
        try:
            build_config({"data": data, "model": {**model, "pooler": "meen"}})
        except ConfigError as error:
            assert "did you mean 'mean'" in str(error), error
        print(sorted({"torch", "transformers", "peft", "accelerate", "torchmetrics"} & set(sys.modules)))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
