"""Register the schema dataclasses in Hydra's ConfigStore so YAML values are type-checked against them.

Each group gets a schema node named ``_schema_<name>`` (methods) or ``_schema`` (other groups); the YAML
files pick it first in their defaults list and only set values, so defaults stay in ``schema.py``.
Structured configs are in struct mode: a key that is not a dataclass field is rejected at compose time.
"""
from __future__ import annotations

from hydra.core.config_store import ConfigStore

from sweep.config import schema

TRAIN_SCHEMA_NAME = "_schema_train"


def register_configs() -> ConfigStore:
    """Store every schema node (idempotent: re-storing a name replaces it). Returns the store."""
    cs = ConfigStore.instance()
    cs.store(name=TRAIN_SCHEMA_NAME, node=schema.TrainConfig)
    for method, node in schema.METHOD_SCHEMAS.items():
        cs.store(group="method", name=f"_schema_{method}", node=node)
    for group, node in schema.GROUP_SCHEMAS.items():
        cs.store(group=group, name="_schema", node=node)
    return cs
