"""Config schemas, registration, validation and composition.

``schema`` holds the dataclasses (the one place for defaults); ``register_configs`` stores them in Hydra's
ConfigStore; ``value_problems`` checks values (the full check, with the registries' names, is
``sweep.train.config_check.validate_train_config``); ``compose_train_config`` composes ``conf/train.yaml``
outside a Hydra app; ``conf_dir`` locates the YAML tree.
"""
from sweep.config.compose import compose_train_config, default_run_dir
from sweep.config.paths import conf_dir
from sweep.config.store import register_configs
from sweep.config.validate import ConfigError, value_problems

__all__ = [
    "ConfigError",
    "compose_train_config",
    "conf_dir",
    "default_run_dir",
    "register_configs",
    "value_problems",
]
